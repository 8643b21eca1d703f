"""The engine's guarantees, observed end to end through the native HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, scaled, wait_batch, wait_until
from tests.support.paging import all_items
from tests.support.runlog import read_runs

pytestmark = pytest.mark.timeout(scaled(60))


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def create(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post("/api/batches", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    # An end sorts before a start at the same instant: touching intervals do not overlap.
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def finished(c: httpx.Client, batch_id: str) -> dict[str, Any]:
    """Wait until nothing of the batch runs any more (a cancelled batch is terminal at once)."""

    def done() -> dict[str, Any] | None:
        b = c.get(f"/api/batches/{batch_id}").json()
        return b if b["finished_at"] is not None else None

    return dict(wait_until(done, timeout_s=30, what=f"batch {batch_id} finished"))


# priority and parallelism


def test_priority_high_batch_items_start_before_low_batch_items(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(run_worker="false")
    with server.client() as c:
        low = create(c, task="tracked", items=[{"n": i} for i in range(3)], priority=10)
        high = create(c, task="tracked", items=[{"n": i} for i in range(3)], priority=90)
        # Both wait, the low one first, until a worker comes: it must pick the high one.
        make_server(command="worker", worker_concurrency=1)
        assert wait_batch(c, low["id"])["status"] == "completed"
        assert wait_batch(c, high["id"])["status"] == "completed"
        high_starts = [ts(i["started_at"]) for i in all_items(c, high["id"])]
        low_starts = [ts(i["started_at"]) for i in all_items(c, low["id"])]
    assert max(high_starts) < min(low_starts)


def capped_run(server: Server, *, parallelism: int, n: int, seconds: float) -> list[Any]:
    """The items of a completed batch of ``n`` tracked items of ``seconds`` each."""
    with server.client() as c:
        b = create(c, task="tracked", parallelism=parallelism,
                   items=[{"n": i, "seconds": seconds} for i in range(n)])
        assert wait_batch(c, b["id"])["status"] == "completed"
        return all_items(c, b["id"])


def test_parallelism_caps_items_running_at_once(make_server: Callable[..., Server]) -> None:
    server = make_server()
    items = capped_run(server, parallelism=3, n=9, seconds=0.5)
    intervals = [(ts(i["started_at"]), ts(i["finished_at"])) for i in items]
    assert len(intervals) == 9
    assert max_overlap(intervals) == 3
    # Every item counts as taken once, whether claimed or started from the reserve.
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert "batchd_items_claimed_total 9.0" in metrics.splitlines()


def test_a_full_batch_starts_its_next_items_in_freed_slots_across_workers(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    # Two worker processes, a batch held at its cap. A worker holds the batch's next
    # items in reserve and starts one the moment one of its items returns, with no claim
    # in between (its start is that item's end); the cap still holds, every item runs once.
    server = make_server(run_worker="false")
    for _ in range(2):
        make_server(command="worker")
    items = capped_run(server, parallelism=4, n=80, seconds=0.05)
    spans = [(ts(i["started_at"]), ts(i["finished_at"])) for i in items]
    assert max_overlap(spans) <= 4
    ends = {end for _, end in spans}
    assert sum(1 for start, _ in spans if start in ends) >= 20, "no slot was passed on"
    starts = [r for r in read_runs(run_log) if r.what == "start"]
    assert sorted(r.item_id for r in starts) == sorted(i["id"] for i in items)  # once each
    assert {r.attempt for r in starts} == {1}



# fail-fast and budget


@pytest.mark.parametrize(("parallelism", "first_s", "status", "statuses"), [
    # One at a time: the first item succeeded before the second failed.
    (1, 0.05, "partial", ["succeeded", "failed"] + ["cancelled"] * 6),
    # Two at a time: the first item still runs when the second fails, and is stopped.
    (2, 60, "failed", ["cancelled", "failed"] + ["cancelled"] * 6),
])
def test_fail_fast_cancels_the_rest_after_a_failure(
    make_server: Callable[..., Server], parallelism: int, first_s: float, status: str,
    statuses: list[str],
) -> None:
    server = make_server()
    with server.client() as c:
        items = [{"n": 0, "seconds": first_s}, {"n": 1, "fail": True}]
        items += [{"n": n, "seconds": 60} for n in range(2, 8)]
        b = create(c, task="tracked", fail_fast=True, parallelism=parallelism, max_attempts=1,
                   items=items)
        done = wait_batch(c, b["id"], timeout_s=30)
        rows = all_items(c, b["id"])
    assert done["status"] == status
    assert done["error"]["code"] == "fail_fast"
    assert [i["status"] for i in rows] == statuses
    assert done["counts"] == {"total": 8, "queued": 0, "running": 0,
                              "succeeded": statuses.count("succeeded"), "failed": 1,
                              "cancelled": statuses.count("cancelled")}
    assert {i["error"]["code"] for i in rows if i["status"] == "cancelled"} == {"fail_fast"}
    assert rows[1]["error"]["code"] == "handler_error"
    # Only the items dealt out before the failure ever ran.
    assert [i["attempts"] for i in rows] == [1, 1] + [0] * 6


@pytest.mark.parametrize(("runner", "est_usd"), [(None, 0.01), ("cheap", 0.001)])
def test_budget_cap_stops_dispatch_and_cancels_the_rest(
    make_server: Callable[..., Server], runner: str | None, est_usd: float
) -> None:
    # An estimate above the cap is refused up front (tests/e2e/test_user_path_budgets.py);
    # the cap still stops a batch whose items cost more than estimated.
    server = make_server()
    budget = 8 * est_usd
    with server.client() as c:
        body: dict[str, Any] = {"task": "tracked", "budget_usd": budget, "parallelism": 1,
                                "items": [{"n": i, "seconds": 0.05, "cost_usd": 2 * est_usd}
                                          for i in range(8)]}
        if runner:
            body["runner"] = runner
        b = create(c, **body)
        assert b["cost"]["estimated_usd"] == pytest.approx(8 * est_usd)
        done = wait_batch(c, b["id"], timeout_s=30)
        rows = all_items(c, b["id"])
    assert done["status"] == "partial"
    assert done["error"]["code"] == "budget_exceeded"
    assert done["cancel_reason"] == "budget_exceeded"
    # One at a time, each reserving its estimate: a fifth would not fit once four have
    # cost twice theirs.
    assert done["cost"]["actual_usd"] == pytest.approx(8 * est_usd)
    assert (done["counts"]["succeeded"], done["counts"]["cancelled"]) == (4, 4)
    cancelled = [i for i in rows if i["status"] == "cancelled"]
    assert len(cancelled) == 4
    assert {i["error"]["code"] for i in cancelled} == {"budget_exceeded"}
    assert all(i["attempts"] == 0 for i in cancelled)


def test_budget_cap_holds_when_other_batches_share_the_worker(
    make_server: Callable[..., Server],
) -> None:
    # Several batches served by one claim: the capped one must not be dealt a
    # second share on the reservation it had before the first one.
    server = make_server(run_worker="false")
    with server.client() as c:
        capped = create(c, task="tracked", budget_usd=0.12, parallelism=1, items=[
            {"n": i, "seconds": 0.1, "cost_usd": 0.03} for i in range(12)])
        others = [create(c, task="tracked", items=[{"n": 0}]) for _ in range(2)]
        # All three wait until the worker comes, so its first claim serves them together.
        make_server(command="worker", worker_concurrency=12)
        done = wait_batch(c, capped["id"], timeout_s=30)
        for o in others:
            assert wait_batch(c, o["id"])["status"] == "completed"
    assert done["status"] == "partial"
    # One at a time: after four items at 0.03, a fifth 0.01 reservation no longer fits.
    assert done["cost"]["actual_usd"] == pytest.approx(0.12)
    assert done["counts"]["succeeded"] == 4
    assert done["counts"]["cancelled"] == 8


# cancellation


def test_cancel_waiting_batch_cancels_every_item_at_once(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    server = make_server()
    with server.client() as c:
        b = create(c, task="tracked", run_after=iso_in(60), items=[{"n": i} for i in range(5)])
        r = c.post(f"/api/batches/{b['id']}/cancel", json={"reason": "not needed"})
        assert r.status_code == 200, r.text
        now = r.json()
        rows = all_items(c, b["id"])
    assert now["status"] == "cancelled"
    assert now["counts"] == {"total": 5, "queued": 0, "running": 0, "succeeded": 0,
                             "failed": 0, "cancelled": 5}
    assert now["finished_at"] is not None
    assert now["error"] == {"code": "cancelled", "message": "not needed"}
    assert [i["status"] for i in rows] == ["cancelled"] * 5
    assert all(i["attempts"] == 0 and i["error"]["code"] == "cancelled" for i in rows)
    assert read_runs(run_log) == []


def test_cancel_running_items_stops_them_and_never_retries(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    server = make_server()
    with server.client() as c:
        b = create(c, task="tracked", parallelism=2, max_attempts=3,
                   items=[{"n": i, "seconds": 30} for i in range(5)])
        wait_until(lambda: len(read_runs(run_log)) == 2, what="two items running")
        r = c.post(f"/api/batches/{b['id']}/cancel")
        assert r.status_code == 200, r.text
        at_cancel = r.json()
        # Queued items go at once; running ones stop cooperatively.
        assert at_cancel["status"] == "cancelled"
        assert at_cancel["counts"] == {"total": 5, "queued": 0, "running": 2, "succeeded": 0,
                                       "failed": 0, "cancelled": 3}
        assert at_cancel["finished_at"] is None  # not before the running ones stopped
        done = finished(c, b["id"])
        # Another batch run to its end shows the worker went round its loop since.
        after = create(c, task="tracked", items=[{"n": 99}])
        assert wait_batch(c, after["id"])["status"] == "completed"
        rows = all_items(c, b["id"])
    assert done["status"] == "cancelled"
    assert done["counts"]["cancelled"] == 5
    assert [i["status"] for i in rows] == ["cancelled"] * 5
    started = [i for i in rows if i["attempts"]]
    assert len(started) == 2 and all(i["attempts"] == 1 for i in started)
    runs = [run for run in read_runs(run_log) if run.item_id in {i["id"] for i in rows}]
    assert sorted((run.item_id, run.attempt, run.what) for run in runs) == sorted(
        (i["id"], 1, "start") for i in started
    )


def test_cancel_running_sync_handler_frees_its_thread(make_server: Callable[..., Server]) -> None:
    server = make_server(worker_threads=1)
    with server.client() as c:
        b = create(c, task="blocking", items=[{"seconds": 30}])
        wait_until(lambda: c.get(f"/api/batches/{b['id']}").json()["counts"]["running"] == 1,
                   what="blocking item running")
        assert c.post(f"/api/batches/{b['id']}/cancel").status_code == 200
        done = finished(c, b["id"])
        (item,) = all_items(c, b["id"])
        assert done["status"] == "cancelled"
        assert item["status"] == "cancelled" and item["attempts"] == 1
        # The only handler thread is free again only if the handler saw the flag and stopped.
        nxt = create(c, task="blocking", items=[{"seconds": 0.1}])
        assert wait_batch(c, nxt["id"], timeout_s=15)["status"] == "completed"


# retries, run_after, timeouts


def test_retry_succeeds_after_transient_failures_with_growing_backoff(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    server = make_server()
    backoff_s = 0.5
    with server.client() as c:
        b = create(c, task="tracked", max_attempts=3, retry_backoff_s=backoff_s,
                   items=[{"n": 1, "fail_times": 2}])
        done = wait_batch(c, b["id"], timeout_s=30)
        (item,) = all_items(c, b["id"])
    assert done["status"] == "completed"
    assert item["status"] == "succeeded"
    assert item["attempts"] == 3
    assert item["output"] == {"n": 1, "attempt": 3}
    starts = [r for r in read_runs(run_log) if r.what == "start"]
    assert [r.attempt for r in starts] == [1, 2, 3]
    first_gap = starts[1].at - starts[0].at
    second_gap = starts[2].at - starts[1].at
    # A retry never comes before its backoff, which doubles: these lower bounds are the
    # settings themselves. (No upper bound: a busy machine may always start later.)
    assert first_gap >= backoff_s
    assert second_gap >= 2 * backoff_s


def test_retry_gives_up_after_max_attempts(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    server = make_server()
    with server.client() as c:
        b = create(c, task="tracked", max_attempts=2, items=[{"n": 1, "fail_times": 5}])
        done = wait_batch(c, b["id"], timeout_s=30)
        (item,) = all_items(c, b["id"])
    assert done["status"] == "failed"
    assert item["status"] == "failed"
    assert item["attempts"] == 2
    assert item["error"]["code"] == "handler_error"
    assert "attempt 2" in item["error"]["message"]
    assert [r.attempt for r in read_runs(run_log) if r.what == "start"] == [1, 2]


def test_run_after_holds_items_until_the_time(make_server: Callable[..., Server]) -> None:
    server = make_server()
    run_after = iso_in(scaled(3))  # room for the create and a read before it comes
    with server.client() as c:
        b = create(c, task="square", run_after=run_after, items=[{"n": n} for n in range(3)])
        assert ts(b["run_after"]) == pytest.approx(ts(run_after), abs=1e-3)
        waiting = c.get(f"/api/batches/{b['id']}").json()
        assert waiting["counts"]["queued"] == 3 and waiting["started_at"] is None
        done = wait_batch(c, b["id"])
        items = all_items(c, b["id"])
    assert done["status"] == "completed"
    assert ts(done["started_at"]) >= ts(run_after)
    assert len(items) == 3
    assert all(ts(i["started_at"]) >= ts(run_after) for i in items)


def test_run_after_without_offset_is_read_as_utc(
    make_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "JST-9")  # the server's local zone is not UTC
    server = make_server()
    with server.client() as c:
        naive = create(c, task="square", run_after="2030-01-01T00:00:00", items=[{"n": 1}])
        aware = create(c, task="square", run_after="2030-01-01T09:00:00+09:00", items=[{"n": 1}])
    assert naive["run_after"] == "2030-01-01T00:00:00Z"
    assert aware["run_after"] == "2030-01-01T00:00:00Z"


def test_item_timeout_fails_the_item(make_server: Callable[..., Server]) -> None:
    server = make_server()
    with server.client() as c:
        # The item would sleep far past the test's wait: only the timeout can end it.
        b = create(c, task="sleep", item_timeout_s=0.3, max_attempts=1, items=[{"seconds": 600}])
        done = wait_batch(c, b["id"], timeout_s=30)
        (item,) = all_items(c, b["id"])
    assert done["status"] == "failed"
    assert item["status"] == "failed"
    assert item["error"]["code"] == "timeout"


# idempotent creation


def test_idempotency_key_replays_the_same_json_batch(server: Server) -> None:
    body = {"task": "square", "items": [{"n": 2}, {"n": 3}]}
    with server.client() as c:
        c.headers["Idempotency-Key"] = "order-42"
        first = c.post("/api/batches", json=body)
        again = c.post("/api/batches", json=body)
        changed = c.post("/api/batches", json={**body, "items": [{"n": 4}]})
        listed = c.get("/api/batches").json()["data"]
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert changed.status_code == 422
    assert changed.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert [b["id"] for b in listed] == [first.json()["id"]]


def test_idempotency_key_replays_the_same_ndjson_batch(server: Server) -> None:
    url = "/api/batches?task=square&priority=70"
    body = b'{"n": 2}\n{"n": 3}\n'
    with server.client() as c:
        c.headers.update({"Idempotency-Key": "upload-7", "Content-Type": "application/x-ndjson"})
        first = c.post(url, content=body)
        again = c.post(url, content=body)
        other_body = c.post(url, content=b'{"n": 5}\n')
        other_query = c.post("/api/batches?task=square&priority=71", content=body)
        listed = c.get("/api/batches").json()["data"]
    assert first.status_code == 201, first.text
    assert first.json()["counts"]["total"] == 2 and first.json()["priority"] == 70
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert other_body.status_code == 422
    assert other_query.status_code == 422
    assert [b["id"] for b in listed] == [first.json()["id"]]
