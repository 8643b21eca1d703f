"""Contract tests, on every backend, for the operator actions: retry the failed or
cancelled items of a batch that match a filter (finished batches too: they reopen and
finish again, with counters, state and budget that follow), pause and resume dispatch,
a retry racing a cancel, the dashboard's sessions and reads (attempts kept once each,
the batch list's filters, the workers' claim counters)."""

from __future__ import annotations

import asyncio

import pytest

from batchd.core import actions, dashboard, keys
from batchd.domain import errors
from batchd.domain.models import Batch, Outcome
from batchd.store.base import Store
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import (
    NOW,
    MakeBatch,
    claim,
    counts,
    failed,
    fetch,
    ok,
)

store = contract.store
make_batch = contract.make_batch

pytestmark = pytest.mark.timeout(scaled(60))

ANY = actions.retry_filter()


def consistent(b: Batch) -> None:
    """The counters add up: every item is in exactly one state."""
    assert b.n_queued + b.n_running + b.n_succeeded + b.n_failed + b.n_cancelled == b.n_total


async def statuses(store: Store, batch_id: str) -> dict[int, str]:
    rows = await store.list_items(batch_id, status=None, after_seq=-1, limit=1000)
    return {i.seq: i.status for i in rows}


async def finished_partial(store: Store, make_batch: MakeBatch) -> Batch:
    """A partial batch of 4: items 0 and 1 succeeded, 2 failed on a timeout, 3 on a bad
    input."""
    batch = await make_batch(items=4, parallelism=4)
    a, b, c, d = sorted(await claim(store), key=lambda i: i.seq)
    await store.finish_items([
        ok(a), ok(b),
        failed(c, error={"code": "timeout", "message": "Upstream TIMED OUT after 30 s"}),
        failed(d, error={"code": "bad_input", "message": "no field x"}),
    ], now=NOW + 1)
    done = await fetch(store, batch.id)
    assert done.status == "partial" and done.finished_at is not None
    return done


async def test_retry_of_a_finished_batch_reopens_it_and_it_finishes_again(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await finished_partial(store, make_batch)

    touched = await store.retry_items(batch.id, actions.retry_filter(error_text="timed out"),
                                      now=NOW + 10)

    assert touched == 1
    reopened = await fetch(store, batch.id)
    assert (reopened.status, reopened.finished_at, reopened.stop_reason) == ("closed", None, None)
    assert counts(reopened) == {"total": 4, "queued": 1, "running": 0, "succeeded": 2,
                                "failed": 1, "cancelled": 0}
    assert reopened.r_failed == 1
    assert (await statuses(store, batch.id))[2] == "queued"
    [again] = await claim(store, now=NOW + 11)
    assert (again.seq, again.attempts) == (2, 1)  # fresh attempts
    item = await store.get_item(batch.id, again.rowid)
    assert item is not None and item.error is None

    await store.finish_items([ok(again)], now=NOW + 12)
    done = await fetch(store, batch.id)
    assert done.status == "partial" and done.finished_at == NOW + 12
    assert counts(done)["succeeded"] == 3

    # The rest, by its error code: the batch completes.
    assert await store.retry_items(batch.id, actions.retry_filter(error_code="bad_input"),
                                   now=NOW + 13) == 1
    [last] = await claim(store, now=NOW + 14)
    await store.finish_items([ok(last)], now=NOW + 15)
    done = await fetch(store, batch.id)
    assert done.status == "completed" and done.r_failed == 0
    consistent(done)


async def test_retry_touches_only_what_matches(store: Store, make_batch: MakeBatch) -> None:
    batch = await finished_partial(store, make_batch)

    nothing = actions.retry_filter(error_text="no such error")
    assert await store.retry_items(batch.id, nothing, now=NOW + 5) == 0
    cancelled_only = actions.retry_filter(["cancelled"])
    assert await store.retry_items(batch.id, cancelled_only, now=NOW + 5) == 0
    unchanged = await fetch(store, batch.id)
    assert unchanged.status == "partial" and unchanged.finished_at is not None

    assert await store.retry_items(batch.id, ANY, now=NOW + 6) == 2
    assert counts(await fetch(store, batch.id))["queued"] == 2


async def test_retry_lifts_a_fail_fast_stop_and_runs_the_cancelled_items(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=5, fail_fast=True, parallelism=1)
    [first] = await claim(store)
    await store.finish_items([failed(first)], now=NOW + 1)
    stopped = await fetch(store, batch.id)
    assert stopped.status == "failed" and stopped.n_cancelled == 4

    assert await store.retry_items(batch.id, actions.retry_filter(["cancelled"]),
                                   now=NOW + 2) == 4
    again = await fetch(store, batch.id)
    assert (again.status, again.stop_reason, again.error) == ("closed", None, None)
    assert counts(again) == {"total": 5, "queued": 4, "running": 0, "succeeded": 0,
                             "failed": 1, "cancelled": 0}
    for n in range(4):
        [item] = await claim(store, now=NOW + 3 + n)
        await store.finish_items([ok(item)], now=NOW + 3 + n)
    done = await fetch(store, batch.id)
    assert done.status == "partial" and counts(done)["succeeded"] == 4
    consistent(done)


async def test_retry_keeps_the_budget_exact(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=2, est_usd=1.0, budget_usd=10.0, parallelism=2)
    a, b = await claim(store)
    await store.finish_items([ok(a, cost_usd=1.5), failed(b, cost_usd=0.5)], now=NOW + 1)
    spent = await fetch(store, batch.id)
    assert (spent.actual_usd, spent.reserved_usd) == (2.0, 0.0)

    assert await store.retry_items(batch.id, ANY, now=NOW + 2) == 1
    retried = await fetch(store, batch.id)
    assert (retried.actual_usd, retried.reserved_usd) == (2.0, 0.0)  # spent stays spent
    [again] = await claim(store, now=NOW + 3)
    assert (await fetch(store, batch.id)).reserved_usd == 1.0
    await store.finish_items([ok(again, cost_usd=0.75)], now=NOW + 4)
    done = await fetch(store, batch.id)
    assert (done.status, done.actual_usd, done.reserved_usd) == ("completed", 2.75, 0.0)


async def test_a_cancelled_batch_is_not_retried(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=3, parallelism=1)
    await store.stop_batch(batch.id, reason="cancelled", detail=None, now=NOW + 1)

    with pytest.raises(errors.Conflict):
        await store.retry_items(batch.id, ANY, now=NOW + 2)
    after = await fetch(store, batch.id)
    assert after.status == "cancelled" and counts(after)["cancelled"] == 3


async def test_a_cancel_after_a_retry_cancels_the_retried_items(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await finished_partial(store, make_batch)
    assert await store.retry_items(batch.id, ANY, now=NOW + 2) == 2

    await store.stop_batch(batch.id, reason="cancelled", detail=None, now=NOW + 3)

    done = await fetch(store, batch.id)
    assert done.status == "cancelled" and done.finished_at is not None
    assert counts(done) == {"total": 4, "queued": 0, "running": 0, "succeeded": 2,
                            "failed": 0, "cancelled": 2}
    assert await claim(store, now=NOW + 4) == []


async def test_a_retry_racing_a_cancel_ends_cancelled_and_consistent(
    store: Store, make_batch: MakeBatch
) -> None:
    for round_ in range(5):
        batch = await make_batch(items=6, parallelism=3)
        first = await claim(store, now=NOW + round_)
        await store.finish_items([failed(i) for i in first], now=NOW + round_)

        async def retry(batch_id: str = batch.id) -> int | None:
            try:
                return await store.retry_items(batch_id, ANY, now=NOW + 20)
            except errors.Conflict:
                return None  # the cancel came first

        async def cancel(batch_id: str = batch.id) -> bool:
            return await store.stop_batch(batch_id, reason="cancelled", detail=None,
                                          now=NOW + 20)

        if round_ % 2:
            await asyncio.gather(cancel(), retry())
        else:
            await asyncio.gather(retry(), cancel())
        done = await fetch(store, batch.id)
        assert done.status == "cancelled"
        assert done.n_queued == 0 and done.n_running == 0
        consistent(done)
        assert "queued" not in (await statuses(store, batch.id)).values()


async def test_a_paused_batch_hands_out_nothing_until_resumed(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=4, parallelism=2)
    running = await claim(store)
    assert len(running) == 2

    assert await store.pause_batch(batch.id, now=NOW + 1) == 2  # two queued held back
    assert await store.pause_batch(batch.id, now=NOW + 1) == 0  # paused already
    paused = await fetch(store, batch.id)
    assert paused.paused_at == NOW + 1
    # What runs finishes; nothing more is handed out.
    await store.finish_items([ok(i) for i in running], now=NOW + 2)
    assert await claim(store, now=NOW + 3) == []
    assert (await fetch(store, batch.id)).status == "closed"

    assert await store.resume_batch(batch.id, now=NOW + 4) == 2
    assert await store.resume_batch(batch.id, now=NOW + 4) == 0
    assert (await fetch(store, batch.id)).paused_at is None
    rest = await claim(store, now=NOW + 5)
    assert len(rest) == 2
    await store.finish_items([ok(i) for i in rest], now=NOW + 6)
    assert (await fetch(store, batch.id)).status == "completed"


async def test_a_finished_batch_is_not_paused(store: Store, make_batch: MakeBatch) -> None:
    batch = await finished_partial(store, make_batch)
    with pytest.raises(errors.Conflict):
        await store.pause_batch(batch.id, now=NOW + 5)
    with pytest.raises(errors.NotFound):
        await store.pause_batch("bat_missing", now=NOW + 5)


async def test_a_retry_of_a_paused_batch_waits_for_the_resume(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2, parallelism=2, close=False)
    a, b = await claim(store)
    await store.finish_items([ok(a), failed(b)], now=NOW + 1)
    await store.pause_batch(batch.id, now=NOW + 2)

    assert await store.retry_items(batch.id, ANY, now=NOW + 3) == 1
    assert (await fetch(store, batch.id)).status == "open"  # an open batch stays open
    assert await claim(store, now=NOW + 4) == []
    await store.resume_batch(batch.id, now=NOW + 5)
    assert len(await claim(store, now=NOW + 6)) == 1


async def test_a_session_acts_as_its_key_until_it_ends(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="pro", now=NOW)
    await store.create_key(key_id="key_1", tenant_id=t.id, key_hash="h1", prefix="bd_abc",
                           role="supervisor", tier="pro", owner="alice", now=NOW)
    token = keys.hash_key("session-token")

    await store.create_session(token, key_id="key_1", now=NOW, expires_at=NOW + 60)

    found = await store.session_key(token, now=NOW + 1)
    assert found is not None and (found.id, found.role, found.tenant_name) == (
        "key_1", "supervisor", "acme")
    assert await store.session_key(token, now=NOW + 61) is None  # expired
    assert await store.session_key(keys.hash_key("other"), now=NOW + 1) is None
    assert await store.delete_session(token) is True
    assert await store.session_key(token, now=NOW + 1) is None

    await store.create_session(token, key_id="key_1", now=NOW, expires_at=NOW + 60)
    await store.revoke_key("key_1", now=NOW + 2)
    assert await store.session_key(token, now=NOW + 3) is None  # the key was revoked


async def test_attempts_that_did_not_succeed_are_recorded_once_each(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2, parallelism=2, max_attempts=3)
    a, b = sorted(await claim(store), key=lambda i: i.seq)
    again = Outcome(rowid=a.rowid, fence=a.fence, status="queued", retry_at=NOW + 2,
                    error={"code": "rate_limited", "message": "slow down"}, tokens_in=5,
                    finished_at=NOW + 1)

    assert await store.finish_items([again, ok(b)], now=NOW + 1) == 2
    assert await store.finish_items([again], now=NOW + 1) == 0  # stale: no second record

    [first] = await store.item_attempts(a.rowid, limit=10)
    assert (first.attempt, first.outcome, first.worker, first.ended_at) == (
        1, "retried", "w1", NOW + 1)
    assert first.error == {"code": "rate_limited", "message": "slow down"}
    assert first.usage == {"tokens_in": 5, "tokens_out": 0, "cost_usd": 0.0}
    assert await store.item_attempts(b.rowid, limit=10) == []  # a success stays on the item

    [a2] = await claim(store, now=NOW + 3)
    await store.finish_items([failed(a2, finished_at=NOW + 4)], now=NOW + 4)
    tries = await store.item_attempts(a.rowid, limit=10)
    assert [(t.attempt, t.outcome) for t in tries] == [(1, "retried"), (2, "failed")]
    assert tries[1].started_at == pytest.approx(NOW + 3, abs=1.0)  # the lease's grant
    consistent(await fetch(store, batch.id))


async def test_an_expired_lease_is_kept_as_a_retried_attempt(
    store: Store, make_batch: MakeBatch
) -> None:
    await make_batch(items=1, max_attempts=3)
    [a] = await claim(store)

    await store.reap(now=NOW + contract.LEASE_S + 1, retry_backoff_max_s=1.0,
                     staging_ttl_s=3600.0)

    [lost] = await store.item_attempts(a.rowid, limit=10)
    assert (lost.attempt, lost.outcome, lost.worker) == (1, "retried", "w1")
    assert lost.error is not None and lost.error["code"] == "lease_expired"


async def test_the_batch_list_filters_by_dialect_time_and_metadata(
    store: Store, make_batch: MakeBatch
) -> None:
    old = await make_batch(items=1, metadata={"customer": "needle-77"})
    spark = await make_batch(items=1, dialect="spark", now=NOW + 10)
    assert (old.dialect, spark.dialect) == ("native", "spark")

    async def ids(**filters: object) -> list[str]:
        rows = await store.list_batches(tenant_id=old.tenant_id, before_pk=None, limit=10,
                                        **filters)
        return [b.id for b in rows]

    assert await ids() == [spark.id, old.id]
    assert await ids(dialect="spark") == [spark.id]
    assert await ids(since=NOW + 5) == [spark.id]
    assert await ids(until=NOW + 5) == [old.id]
    assert await ids(search="needle-77") == [old.id]
    assert await ids(search="nothing-here") == []


async def test_a_workers_claim_counter_gives_its_claim_rate(store: Store) -> None:
    await store.heartbeat(owner="w9", now=NOW, lease_until=NOW + 30, info={}, claimed=4)
    await store.heartbeat(owner="w9", now=NOW + 2, lease_until=NOW + 32, info={}, claimed=14)

    [c] = [c for c in await store.worker_claims(since=NOW) if c.worker == "w9"]
    assert dashboard.claim_rate(c) == 5.0  # 10 items in 2 s
