"""Signed webhooks from the durable outbox, against a real HTTP receiver."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import standardwebhooks

from tests.conftest import Server, scaled, wait_batch, wait_until
from tests.support.receiver import Delivery, receiver, signed_by

pytestmark = pytest.mark.timeout(180)

TASKS = "tests.support.tasks,tests.support.taskrun_tasks"
TASK = "company_profile"
RETRY_BASE_S, RETRY_MAX_S = 0.1, 0.4
FAST_RETRIES = {  # the 24-hour schedule, compressed
    "webhook_retry_base_s": str(RETRY_BASE_S), "webhook_retry_max_s": str(RETRY_MAX_S),
    "webhook_retry_window_s": "600", "webhook_poll_interval_s": "0.1", "webhook_timeout_s": "5",
    "webhook_lease_s": "6",
}
ROTATION_S = 30.0  # README: a rotated secret is "used within 30 s"


def start(make_server: Callable[..., Server], **settings: Any) -> Server:
    return make_server(tasks=TASKS, outbound_allow="loopback", **{**FAST_RETRIES, **settings})


def client(srv: Server) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=60, headers={"x-api-key": srv.admin_key})


def secret_of(c: httpx.Client) -> str:
    secret = c.get("/api/webhooks/secret").json()["secret"]
    assert secret.startswith("whsec_")
    return str(secret)


def submit_runs(c: httpx.Client, urls: list[str], **extra: Any) -> dict[str, Any]:
    r = c.post(f"/v0/tasks/{TASK}/batches", json={"task_run_requests": [
        {"arguments": {"company": f"C{i}", **extra}, "callback_webhook": {"url": url}}
        for i, url in enumerate(urls)
    ]})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def messages(c: httpx.Client, batch_id: str) -> dict[str, dict[str, Any]]:
    """The delivery log of a batch's messages, by item id (or the batch's own: None)."""
    data = c.get("/api/webhooks", params={"batch_id": batch_id}).json()["data"]
    return {m["item_id"]: m for m in data}


def all_delivered(c: httpx.Client, batch_id: str) -> dict[str, dict[str, Any]] | None:
    log = messages(c, batch_id)
    return log if log and all(m["status"] == "delivered" for m in log.values()) else None


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def delay_s(attempt: int) -> float:
    """The server's wait after failed attempt ``attempt`` under FAST_RETRIES."""
    return min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (attempt - 1))


def random_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def only_verified(deliveries: list[Delivery]) -> list[Delivery]:
    assert deliveries, "no delivery arrived"
    unverified = [d for d in deliveries if not d.verified]
    assert not unverified, f"{len(unverified)} deliveries fail standardwebhooks verification"
    return deliveries


def test_webhook_is_signed_standard_webhooks(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c, receiver(secret_of(c)) as rx:
        batch = submit_runs(c, [rx.url("/runs")])
        got = wait_until(lambda: rx.on("/runs"), what="the webhook")[0]

        assert got.signed_by == rx.secret
        assert got.webhook_id.startswith("msg_")
        assert got.headers["webhook-signature"].startswith("v1,")
        # The Standard Webhooks library itself: the body verifies and parses as JSON under
        # the tenant's secret, not under another secret, not with another body.
        assert standardwebhooks.Webhook(rx.secret).verify(got.body, got.headers) == got.json()
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(random_secret()).verify(got.body, got.headers)
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(rx.secret).verify(got.body + b" ", got.headers)
        body = got.json()
        assert body["type"] == "task_run.status"
        run = body["data"]
        assert (run["run_id"], run["status"]) == (batch["run_ids"][0], "complete")
        assert run["output"]["name"] == "C0 Inc"
        log = wait_until(lambda: all_delivered(c, batch["batch_run_id"]),
                         what="delivery recorded")[batch["run_ids"][0]]
        assert (log["id"], log["attempts"], log["last_status_code"]) == (got.webhook_id, 1, 200)


def test_webhook_retries_after_500_and_stops_at_410(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c, receiver(secret_of(c), answers={
        "/flaky": [500, 200], "/gone": [410], "/down": [503],
    }) as rx:
        batch = submit_runs(c, [rx.url("/flaky"), rx.url("/gone"), rx.url("/down")])
        flaky, gone, down = batch["run_ids"]

        def settled() -> dict[str, dict[str, Any]] | None:
            log = messages(c, batch["batch_run_id"])
            if len(log) != 3 or log[flaky]["status"] != "delivered" or \
                    log[gone]["status"] != "gone":
                return None
            # Had /gone been scheduled again, it was due RETRY_BASE_S after its attempt
            # was recorded; /down's attempts are claimed no earlier than their previous
            # attempt's record time plus at least RETRY_BASE_S. So once /down has two
            # attempts recorded after /gone's, a retry of /gone would have been claimed.
            gone_at = ts(log[gone]["last_attempt_at"])
            tries = c.get(f"/api/webhooks/{log[down]['id']}").json()["attempts_log"]
            later = [a for a in tries if ts(a["at"]) >= gone_at]
            return log if len(later) >= 2 else None

        log = wait_until(settled, what="/flaky delivered, /gone stopped, /down retried")
        assert [d.webhook_id for d in rx.on("/flaky")] == [log[flaky]["id"]] * 2
        assert [d.webhook_id for d in rx.on("/gone")] == [log[gone]["id"]]
        only_verified(rx.deliveries)

        assert (log[flaky]["status"], log[flaky]["attempts"]) == ("delivered", 2)
        assert (log[gone]["status"], log[gone]["attempts"]) == ("gone", 1)
        assert log[down]["status"] == "pending" and log[down]["next_attempt_at"]
        assert log[down]["attempts"] >= 2
        detail = c.get(f"/api/webhooks/{log[flaky]['id']}").json()
        assert [(a["attempt"], a["status_code"]) for a in detail["attempts_log"]] == [
            (1, 500), (2, 200)]
        assert detail["attempts_log"][0]["error"] == "HTTP 500"


def test_webhook_gives_up_at_the_end_of_its_window(make_server: Callable[..., Server]) -> None:
    window_s = scaled(1.5)
    srv = start(make_server, webhook_retry_window_s=str(window_s))
    with client(srv) as c, receiver(secret_of(c), answers={"/down": [500]}) as rx:
        batch = submit_runs(c, [rx.url("/down")])

        def failed() -> dict[str, Any] | None:
            m = messages(c, batch["batch_run_id"]).get(batch["run_ids"][0])
            return m if m is not None and m["status"] == "failed" else None

        m = wait_until(failed, timeout_s=window_s + 30, what="the message to be given up")
        assert m["next_attempt_at"] is None
        tries = c.get(f"/api/webhooks/{m['id']}").json()["attempts_log"]
        assert [a["attempt"] for a in tries] == list(range(1, m["attempts"] + 1))
        assert [d.webhook_id for d in rx.on("/down")] == [m["id"]] * m["attempts"]
        assert [a["status_code"] for a in tries] == [500] * m["attempts"]
        # Retried while inside the window, each after its backoff; given up after the
        # first attempt that failed at or past the window's end.
        age = [ts(a["at"]) - ts(m["created_at"]) for a in tries]
        assert all(x < window_s for x in age[:-1]) and age[-1] >= window_s, age
        gaps = [b - a for a, b in zip(age, age[1:], strict=False)]
        assert all(gap >= delay_s(n) for n, gap in enumerate(gaps, 1)), gaps


def test_webhook_redirects_are_not_followed(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c, receiver(secret_of(c), redirects={"/moved": "/target"}) as rx:
        batch = submit_runs(c, [rx.url("/moved")])
        wait_until(lambda: len(rx.on("/moved")) >= 2, what="a retry of the redirect")

        assert rx.on("/target") == []
        m = messages(c, batch["batch_run_id"])[batch["run_ids"][0]]
        assert m["status"] == "pending" and m["last_status_code"] == 302
        assert m["last_error"] == "redirect not followed (302)"


def test_webhook_every_run_arrives_despite_a_kill_between_commit_and_delivery(
    make_server: Callable[..., Server],
) -> None:
    srv = start(make_server)
    with client(srv) as c:
        secret = secret_of(c)
    # The receiver keeps the first request of every message waiting: the outcome is
    # committed and its message sent, but its delivery not yet recorded.
    with receiver(secret, hold={"/runs"}) as rx:
        with client(srv) as c:
            batch = submit_runs(c, [rx.url("/runs")] * 20)
            wait_until(lambda: rx.held >= 3, what="deliveries in flight")
        srv.kill()  # SIGKILL: nothing is recorded after this point
        rx.release()
        in_flight = {d.webhook_id for d in rx.deliveries}

        srv.start()
        with client(srv) as c:
            unique = wait_until(lambda: rx.unique("/runs") if len(rx.unique("/runs")) == 20
                                else None, what="every run's webhook", timeout_s=90)
            log = wait_until(lambda: all_delivered(c, batch["batch_run_id"]),
                             what="every delivery recorded")

    # Every run's webhook arrived at least once, signed; the receiver de-duplicates by
    # webhook-id, and the ones in flight at the kill came twice with the same id.
    runs = {d.json()["data"]["run_id"] for d in unique.values()}
    assert runs == set(batch["run_ids"])
    only_verified(rx.deliveries)
    resent = [i for i in in_flight if len([d for d in rx.deliveries if d.webhook_id == i]) > 1]
    assert resent, "the deliveries cut by the kill were sent again"
    assert len(rx.deliveries) > len(unique)
    assert set(unique) == {m["id"] for m in log.values()}


def test_webhook_outbox_survives_a_server_without_delivery(
    make_server: Callable[..., Server],
) -> None:
    """Outcomes committed while no process delivers are delivered once one does."""
    quiet = start(make_server, webhook_delivery="false")
    with client(quiet) as c, receiver(secret_of(c)) as rx:
        batch = submit_runs(c, [rx.url("/later")] * 5)
        wait_until(lambda: [m["status"] for m in messages(c, batch["batch_run_id"]).values()]
                   == ["pending"] * 5, what="5 pending messages")
        assert rx.deliveries == []
        quiet.kill()
        start(make_server)  # same database, delivering
        wait_until(lambda: len(rx.unique("/later")) == 5, what="the 5 webhooks")
        runs = {d.json()["data"]["run_id"] for d in only_verified(rx.deliveries)}
        assert runs == set(batch["run_ids"])


def test_native_batch_webhook_url(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    with client(srv) as c, receiver(secret_of(c)) as rx:
        r = c.post("/api/batches", json={"task": "echo", "items": [1, 2, 3],
                                         "webhook_url": rx.url("/batch")})
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["webhook_url"] == rx.url("/batch")
        wait_batch(c, batch["id"])
        got = wait_until(lambda: rx.on("/batch"), what="batch.finished")[0]

        assert got.signed_by == rx.secret
        body = got.json()
        assert body["type"] == "batch.finished"
        assert (body["data"]["id"], body["data"]["status"]) == (batch["id"], "completed")
        assert body["data"]["counts"]["succeeded"] == 3
        assert messages(c, batch["id"])[None]["event"] == "batch.finished"


def test_webhook_urls_to_private_addresses_are_refused(
    make_server: Callable[..., Server],
) -> None:
    srv = make_server(tasks=TASKS)  # no BATCHD_OUTBOUND_ALLOW: loopback is refused too
    with client(srv) as c:
        for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://10.0.0.8/x",
                    "http://169.254.169.254/latest", "http://[::1]/x", "http://0.0.0.0/x"):
            r = c.post(f"/v0/tasks/{TASK}/batches", json={"task_run_requests": [
                {"arguments": {"company": "A"}, "callback_webhook": {"url": url}}]})
            assert r.status_code == 422, url
            assert r.json()["detail"][0]["loc"] == [
                "body", "task_run_requests", 0, "callback_webhook", "url"]
            assert "refused" in r.json()["detail"][0]["msg"]
            r = c.post("/api/batches", json={"task": "echo", "items": [1], "webhook_url": url})
            assert r.status_code == 422, url
            assert r.json()["detail"][0]["loc"] == ["body", "webhook_url"]


def test_webhook_log_and_secret_are_the_tenants(make_server: Callable[..., Server]) -> None:
    srv = start(make_server)
    acme_key, globex_key = srv.new_key("acme"), srv.new_key("globex")
    acme = httpx.Client(base_url=srv.url, headers={"x-api-key": acme_key})
    globex = httpx.Client(base_url=srv.url, headers={"x-api-key": globex_key})
    with acme, globex, receiver(secret_of(acme)) as rx:
        assert secret_of(globex) != rx.secret
        batch = submit_runs(acme, [rx.url("/t")])
        wait_until(lambda: rx.on("/t"), what="the webhook")
        got = rx.on("/t")[0]
        assert got.signed_by == rx.secret  # signed with acme's secret, not globex's
        assert signed_by([secret_of(globex)], got.headers, got.body) is None
        msg_id = rx.on("/t")[0].webhook_id
        assert acme.get(f"/api/webhooks/{msg_id}").status_code == 200
        assert globex.get(f"/api/webhooks/{msg_id}").status_code == 404
        assert globex.get("/api/webhooks").json()["data"] == []
        assert globex.get("/api/webhooks", params={"batch_id": batch["batch_run_id"]}
                          ).status_code == 404
        assert acme.post("/api/webhooks/secret/rotate").status_code == 403  # a user key
        with client(srv) as admin:
            old = secret_of(admin)
            new = admin.post("/api/webhooks/secret/rotate").json()["secret"]
            assert new != old and secret_of(admin) == new



def test_webhook_secret_rotation_signs_with_the_new_secret_within_30_s(
    make_server: Callable[..., Server],
) -> None:
    """README: the rotated secret is used within 30 s; until then the old one may be."""
    srv = start(make_server)
    with client(srv) as c, receiver(secret_of(c)) as rx:
        old = rx.secret
        sent: list[str] = []

        def one_delivery() -> Delivery:
            run_id = submit_runs(c, [rx.url("/rot")])["run_ids"][0]
            sent.append(run_id)
            return wait_until(lambda: [d for d in rx.on("/rot")
                                       if d.json()["data"]["run_id"] == run_id],
                              what=f"the webhook of {run_id}")[0]

        # A delivery before the rotation: the deliverer now holds the old secret.
        assert one_delivery().signed_by == old
        rotated = c.post("/api/webhooks/secret/rotate")
        rotated_at = time.time()
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != old and secret_of(c) == new
        rx.accept(new)

        def signed_with_new() -> Delivery | None:
            got = one_delivery()
            assert got.signed_by in (old, new), "signed with neither the old nor the new secret"
            if int(got.headers["webhook-timestamp"]) >= rotated_at + ROTATION_S:
                assert got.signed_by == new, f"still the old secret {ROTATION_S:g} s after"
            return got if got.signed_by == new else None

        got = wait_until(signed_with_new, timeout_s=ROTATION_S + 30, interval_s=0.5,
                         what="a delivery signed with the rotated secret")
        # The new secret verifies it; the old one no longer does.
        assert standardwebhooks.Webhook(new).verify(got.body, got.headers) == got.json()
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(old).verify(got.body, got.headers)
        assert [d.json()["data"]["run_id"] for d in rx.unique("/rot").values()] == sent
        only_verified(rx.deliveries)
