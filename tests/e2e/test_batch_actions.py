"""Retry, pause and resume through the native API and the `batchd` CLI, against a real
server (SQLite, or PostgreSQL with BATCHD_TEST_BACKEND=postgres)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, scaled, wait_batch, wait_until

pytestmark = pytest.mark.timeout(scaled(180))

TASKS = "tests.support.tasks,tests.support.flaky_tasks"


@pytest.fixture
def srv(make_server: Callable[..., Server]) -> Server:
    return make_server(tasks=TASKS)


def cli(server: Server, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATCHD_URL": server.url, "BATCHD_API_KEY": key or server.admin_key,
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "batchd.cli.main", *args], env=env,
                          cwd=server.log_path.parent, capture_output=True, text=True,
                          timeout=scaled(120))


def flaky_batch(c: httpx.Client, marker: Path, *, n: int = 6, **settings: Any) -> dict[str, Any]:
    """Items with odd ``n`` fail while ``marker`` exists."""
    items = [{"n": i, **({"broken": str(marker)} if i % 2 else {})} for i in range(n)]
    r = c.post("/api/batches", json={"task": "flaky", "items": items, **settings})
    assert r.status_code == 201, r.text
    return r.json()


def finished_partial(c: httpx.Client, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    marker = tmp_path / "broken"
    marker.touch()
    b = wait_batch(c, flaky_batch(c, marker)["id"])
    assert b["status"] == "partial" and b["counts"]["failed"] == 3, b
    return b, marker


def test_retry_of_a_finished_batch_runs_the_failed_items_again_and_it_completes(
    srv: Server, tmp_path: Path
) -> None:
    with srv.client() as c:
        b, marker = finished_partial(c, tmp_path)
        failed = c.get(f"/api/batches/{b['id']}/items", params={"status": "failed"}).json()
        assert all("upstream down" in i["error"]["message"] for i in failed["data"])
        marker.unlink()  # the upstream is back

        none = c.post(f"/api/batches/{b['id']}/retry", json={"error": "no such thing"})
        assert none.status_code == 200 and none.json()["touched"] == 0
        r = c.post(f"/api/batches/{b['id']}/retry",
                   json={"status": ["failed"], "error": "UPSTREAM"})
        assert r.status_code == 200, r.text
        assert r.json()["action"] == "retry" and r.json()["touched"] == 3
        assert r.json()["batch"]["finished_at"] is None

        done = wait_batch(c, b["id"])
        assert done["status"] == "completed", done
        assert done["counts"] == {"total": 6, "queued": 0, "running": 0, "succeeded": 6,
                                  "failed": 0, "cancelled": 0}
        assert done["records"]["failed"] == 0
        again = c.get(f"/api/batches/{b['id']}/items", params={"status": "succeeded"}).json()
        assert {i["output"]["attempt"] for i in again["data"]} == {1}  # fresh attempts
        assert all(i["error"] is None for i in again["data"])


def test_retry_refuses_bad_filters_and_a_cancelled_batch(srv: Server, tmp_path: Path) -> None:
    with srv.client() as c:
        b, _ = finished_partial(c, tmp_path)
        bad = c.post(f"/api/batches/{b['id']}/retry", json={"status": ["succeeded"]})
        assert bad.status_code == 422
        assert c.post(f"/api/batches/{b['id']}/retry", json={"nope": 1}).status_code == 422

        slow = c.post("/api/batches", json={
            "task": "tracked", "items": [{"seconds": 5}] * 4, "parallelism": 1}).json()
        c.post(f"/api/batches/{slow['id']}/cancel")
        refused = c.post(f"/api/batches/{slow['id']}/retry")
        assert refused.status_code == 409, refused.text
        assert "cancelled" in refused.json()["detail"]
        assert c.post(f"/api/batches/{slow['id']}/pause").status_code == 409
        assert c.post("/api/batches/bat_missing/retry").status_code == 404


def test_a_retry_then_a_cancel_leaves_the_batch_cancelled(srv: Server, tmp_path: Path) -> None:
    with srv.client() as c:
        marker = tmp_path / "broken"
        marker.touch()
        # The failing items take a while: the cancel finds the retried ones queued or running.
        items = [{"n": i, **({"broken": str(marker), "seconds": 3} if i % 2 else {})}
                 for i in range(6)]
        b = c.post("/api/batches", json={"task": "flaky", "items": items}).json()
        assert wait_batch(c, b["id"])["status"] == "partial"
        assert c.post(f"/api/batches/{b['id']}/retry").json()["touched"] == 3
        assert c.post(f"/api/batches/{b['id']}/cancel").json()["status"] == "cancelled"
        # Running ones stop cooperatively: wait for them.
        cancelled = wait_until(
            lambda: (x := c.get(f"/api/batches/{b['id']}").json())["counts"]["running"] == 0
            and x, timeout_s=30, what="the running items to stop")
        assert cancelled["counts"] == {"total": 6, "queued": 0, "running": 0, "succeeded": 3,
                                       "failed": 0, "cancelled": 3}
        assert c.post(f"/api/batches/{b['id']}/retry").status_code == 409


def test_pause_holds_a_batch_back_and_resume_lets_it_finish(srv: Server) -> None:
    with srv.client() as c:
        b = c.post("/api/batches", json={
            "task": "tracked", "items": [{"seconds": 0.3}] * 8, "parallelism": 1}).json()
        wait_until(lambda: c.get(f"/api/batches/{b['id']}").json()["counts"]["succeeded"] >= 1,
                   timeout_s=30, what="the first item")
        r = c.post(f"/api/batches/{b['id']}/pause")
        assert r.status_code == 200, r.text
        assert r.json()["touched"] >= 1 and r.json()["batch"]["display_status"] == "paused"
        assert c.post(f"/api/batches/{b['id']}/pause").json()["touched"] == 0

        # What was running finishes; nothing more starts.
        settled = wait_until(
            lambda: (x := c.get(f"/api/batches/{b['id']}").json())["counts"]["running"] == 0
            and x, timeout_s=30, what="the running item to finish")
        time.sleep(1.0)  # several claim rounds: a paused batch must not be handed out
        still = c.get(f"/api/batches/{b['id']}").json()
        assert still["counts"] == settled["counts"] and still["counts"]["queued"] > 0
        assert still["display_status"] == "paused" and still["status"] == "closed"

        resumed = c.post(f"/api/batches/{b['id']}/resume").json()
        assert resumed["touched"] == still["counts"]["queued"]
        assert wait_batch(c, b["id"])["status"] == "completed"


def test_actions_follow_roles_and_tenants(srv: Server, tmp_path: Path) -> None:
    alice = srv.new_key("acme", owner="alice")
    bob = srv.new_key("acme", owner="bob")
    boss = srv.new_key("acme", role="supervisor")
    other = srv.new_key("globex", role="admin")
    with srv.client(alice) as c:
        b, _ = finished_partial(c, tmp_path)
    for key in (bob, other):
        with srv.client(key) as c:
            for action in ("retry", "pause", "resume"):
                r = c.post(f"/api/batches/{b['id']}/{action}")
                assert r.status_code == 404, (action, r.text)
    with srv.client(boss) as c:
        assert c.post(f"/api/batches/{b['id']}/retry",
                      json={"status": "failed"}).json()["touched"] == 3
    with httpx.Client(base_url=srv.url) as anon:
        assert anon.post(f"/api/batches/{b['id']}/pause").status_code == 401


def test_cli_retry_pause_and_resume(srv: Server, tmp_path: Path) -> None:
    with srv.client() as c:
        b, marker = finished_partial(c, tmp_path)
    marker.unlink()

    nothing = cli(srv, "retry", b["id"], "--status", "cancelled")
    assert nothing.returncode == 0, nothing.stderr
    assert "0 items queued again" in nothing.stdout

    paused = cli(srv, "pause", b["id"])
    assert paused.returncode == 1 and "409" in paused.stderr  # it has finished

    retried = cli(srv, "retry", b["id"], "--status", "failed", "--error", "upstream down")
    assert retried.returncode == 0, retried.stderr
    assert f"{b['id']}" in retried.stdout and "3 items queued again" in retried.stdout
    with srv.client() as c:
        assert wait_batch(c, b["id"])["status"] == "completed"

        slow = c.post("/api/batches", json={
            "task": "tracked", "items": [{"seconds": 0.3}] * 20, "parallelism": 1}).json()
    held = cli(srv, "pause", slow["id"])
    assert held.returncode == 0, held.stderr
    assert "paused" in held.stdout and "queued items held back" in held.stdout
    released = cli(srv, "resume", slow["id"])
    assert released.returncode == 0 and "queued items released" in released.stdout
    with srv.client() as c:
        assert wait_batch(c, slow["id"])["status"] == "completed"

    missing = cli(srv, "retry", "bat_missing")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_python_client_retry_pause_resume_and_the_list_filters(
    srv: Server, tmp_path: Path
) -> None:
    from batchd.client import AsyncClient, BatchdHTTPError, Client

    with srv.client() as c:
        b, marker = finished_partial(c, tmp_path)
        slow = c.post("/api/batches", json={
            "task": "tracked", "items": [{"seconds": 0.3}] * 20, "parallelism": 1,
            "metadata": {"project": "needle-42"}}).json()
    marker.unlink()
    with Client(srv.url, srv.admin_key) as client:
        with pytest.raises(BatchdHTTPError) as ended:
            client.pause(b["id"])
        assert ended.value.status_code == 409
        r = client.retry(b["id"], "failed", error="UPSTREAM")
        assert (r["action"], r["touched"]) == ("retry", 3)
        assert client.pause(slow["id"])["batch"]["display_status"] == "paused"

        async def resume() -> dict[str, Any]:
            async with AsyncClient(srv.url, srv.admin_key) as ac:
                return await ac.resume(slow["id"])

        assert asyncio.run(resume())["action"] == "resume"

        assert [x["id"] for x in client.list_batches()][:2] == [slow["id"], b["id"]]
        assert client.get(b["id"])["dialect"] == "native"
    with srv.client() as c:
        def ids(**params: str) -> list[str]:
            r = c.get("/api/batches", params=params)
            assert r.status_code == 200, r.text
            return [x["id"] for x in r.json()["data"]]

        assert ids(q="needle-42") == [slow["id"]]
        assert ids(q=b["id"]) == [b["id"]]
        assert ids(dialect="spark") == []
        assert ids(since="2999-01-01T00:00:00") == []
        assert slow["id"] in ids(dialect="native", until="2999-01-01T00:00:00Z")
        assert c.get("/api/batches", params={"dialect": "nope"}).status_code == 422
        assert wait_batch(c, b["id"])["status"] == "completed"
        assert wait_batch(c, slow["id"])["status"] == "completed"
