"""The outbound address guard, end to end: a loopback receiver named in many notations
gets nothing from a server that does not allow loopback, neither when the URL is given
nor when it is called; the same notations do reach it once loopback is allowed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Server, wait_until
from tests.support.receiver import http_server, receiver
from tests.unit.test_netguard import REFUSED

pytestmark = pytest.mark.timeout(240)

TASKS = "tests.support.tasks,tests.support.taskrun_tasks"
TASK = "company_profile"
FAST = {"webhook_retry_base_s": "0.1", "webhook_retry_max_s": "0.3",
        "webhook_retry_window_s": "600", "webhook_poll_interval_s": "0.1",
        "webhook_timeout_s": "5", "webhook_lease_s": "6"}

# Spellings of 127.0.0.1 that a loopback-allowing server connects to 127.0.0.1 with.
REACHING = ["http://127.0.0.1:{p}/a", "http://2130706433:{p}/b", "http://0177.0.0.1:{p}/c",
            "http://0x7f.1:{p}/d", "http://127.1:{p}/e", "http://127.0.0.1.:{p}/f",
            "http://LOCALHOST:{p}/g", "http://[::ffff:127.0.0.1]:{p}/h",
            "http://[::ffff:7f00:1]:{p}/i", "http://0x7f000001:{p}/j"]
# Spellings refused even where loopback is allowed (deprecated or tunnelled forms), or
# that are not a plain URL of a host.
NEVER = ["http://[::127.0.0.1]:{p}/", "http://[::ffff:0:127.0.0.1]:{p}/",
         "http://[2002:7f00:1::]:{p}/", "http://[fec0::1]:{p}/",
         "http://good.com@127.0.0.1:{p}/", "http://[fe80::1%25lo]:{p}/",
         "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8:{p}/",
         "http://0.0.0.0:{p}/", "http://[::]:{p}/"]
# Loopback by other routes (NAT64, IPv6): allowed with loopback, not the receiver's.
ELSEWHERE = ["http://[64:ff9b::7f00:1]:{p}/", "http://[::1]:{p}/",
             "http://api.localhost:{p}/"]


def client(srv: Server) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=60, headers={"x-api-key": srv.admin_key})


def urls(templates: list[str], port: int) -> list[str]:
    return [t.format(p=port) for t in templates]


def run_with_callback(c: httpx.Client, url: str) -> httpx.Response:
    return c.post(f"/v0/tasks/{TASK}/batches", json={"task_run_requests": [
        {"arguments": {"company": "A"}, "callback_webhook": {"url": url}}]})


def log_of(c: httpx.Client) -> list[dict[str, Any]]:
    page = c.get("/api/webhooks", params={"limit": 100}).json()
    assert page["next_cursor"] is None
    return page["data"]  # type: ignore[no-any-return]


def paths(templates: list[str]) -> list[str]:
    return ["/" + t.rsplit("/", 1)[1] for t in templates]


def test_guard_keeps_a_loopback_receiver_silent_in_every_notation(
    make_server: Callable[..., Server],
) -> None:
    # Accepted while loopback is allowed, by a server that does not deliver.
    quiet = make_server(tasks=TASKS, outbound_allow="loopback", webhook_delivery="false")
    with client(quiet) as c:
        secret = c.get("/api/webhooks/secret").json()["secret"]
    with receiver(secret) as rx:
        port = int(rx.base.rsplit(":", 1)[1])
        reaching = urls(REACHING, port)
        with client(quiet) as c:
            for url in reaching:
                assert run_with_callback(c, url).status_code == 200, url
                r = c.post("/api/batches", json={"task": "echo", "items": [1],
                                                 "webhook_url": url})
                assert r.status_code == 201, r.text
            for url in urls(NEVER, port):  # refused even with loopback allowed
                assert run_with_callback(c, url).status_code == 422, url
            wait_until(lambda: len(log_of(c)) == 2 * len(reaching), what="the messages")
        quiet.kill()

        # The guarded server refuses each URL when given, in both dialects ...
        guarded = make_server(tasks=TASKS, **FAST)
        with client(guarded) as c:
            for url in reaching + urls(NEVER + ELSEWHERE, port):
                r = run_with_callback(c, url)
                assert r.status_code == 422, url
                problem = r.json()["detail"][0]
                assert problem["loc"] == ["body", "task_run_requests", 0, "callback_webhook",
                                          "url"], url
                assert problem["msg"]
                r = c.post("/api/batches", json={"task": "echo", "items": [1],
                                                 "webhook_url": url})
                assert r.status_code == 422, url
                assert r.json()["detail"][0]["loc"] == ["body", "webhook_url"], url

            # ... the unit table's targets too (60+, IPv4 and IPv6 notations), at once:
            for url, _ in REFUSED:
                r = run_with_callback(c, url)
                assert r.status_code == 422 and r.json()["detail"][0]["msg"], (url, r.text)
                r = c.post("/api/batches", json={"task": "echo", "items": [1],
                                                 "webhook_url": url})
                assert r.status_code == 422, (url, r.text)

            # ... and when it calls the ones accepted before: every attempt refused.
            def all_refused() -> list[dict[str, Any]] | None:
                log = log_of(c)
                tried = [m for m in log if m["attempts"] >= 2]
                return log if len(tried) == len(log) else None

            log = wait_until(all_refused, what="two refused attempts of every message")
            assert {m["status"] for m in log} == {"pending"}
            assert all("refused" in m["last_error"] and m["last_status_code"] is None
                       for m in log), [m["last_error"] for m in log]
        assert rx.deliveries == []
        guarded.kill()

        # The control: the same messages do reach the receiver where loopback is allowed.
        make_server(tasks=TASKS, outbound_allow="loopback", **FAST)
        wait_until(lambda: all(len(rx.unique(p)) == 2 for p in paths(REACHING)),
                   what="each notation's two messages delivered")
        assert {d.path for d in rx.deliveries} == set(paths(REACHING))


def test_http_task_urls_are_checked_when_defined_and_when_called(
    make_server: Callable[..., Server],
) -> None:
    calls: list[str] = []

    def upstream(path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes,
                                                                          dict[str, str]]:
        calls.append(path)
        return 200, b'{"ok": true}', {}

    with http_server(upstream) as base:
        port = int(base.rsplit(":", 1)[1])
        allowed = make_server(tasks=TASKS, outbound_allow="loopback")
        with client(allowed) as c:
            r = c.post("/api/tasks", json={"name": "poke", "kind": "http",
                                           "config": {"url": f"{base}/poke", "retries": 0}})
            assert r.status_code == 201, r.text
        allowed.kill()

        guarded = make_server(tasks=TASKS)
        with client(guarded) as c:
            for i, url in enumerate(urls(REACHING + NEVER + ELSEWHERE, port)):
                r = c.post("/api/tasks", json={"name": f"private{i}", "kind": "http",
                                               "config": {"url": url}})
                assert r.status_code == 422, (url, r.text)
                problem = r.json()["detail"][0]
                assert problem["loc"] == ["body", "config", "url"], url
                assert c.get(f"/api/tasks/private{i}").status_code == 404
            r = c.post("/api/tasks", json={"name": "public", "kind": "http",
                                           "config": {"url": "http://93.184.216.34/x"}})
            assert r.status_code == 201, r.text

            # Defined where loopback was allowed, called where it is not: refused.
            r = c.post("/v0/tasks/poke/batches",
                       json={"task_run_requests": [{"arguments": {"n": 1}}]})
            assert r.status_code == 200, r.text
            run_id = r.json()["run_ids"][0]

            def failed() -> dict[str, Any] | None:
                run = c.get(f"/v0/task/poke/run/{run_id}").json()
                return run if run["status"] == "failed" else None

            run = wait_until(failed, what="the run to fail")
            assert run["error"]["code"] == "unsafe_url"
            assert "loopback" in run["error"]["message"]
        assert calls == []
