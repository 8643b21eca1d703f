"""Contract tests, on every backend, for dispatch (core/txn/dispatch.py): the claim plan
under a budget cap, the lease-expiry outcome, fencing, handing out results."""

from __future__ import annotations

import asyncio

import pytest

from batchd.core.db import Database
from batchd.domain.models import Outcome
from batchd.domain.states import StopReason
from batchd.store.base import Store
from tests.conftest import create_pg_database, drop_database, scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import (
    LEASE_S,
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

pytestmark = pytest.mark.timeout(scaled(30))


async def reap(store: Store, now: float, *, backoff_max_s: float = 60.0) -> int:
    return await store.reap(now=now, retry_backoff_max_s=backoff_max_s, staging_ttl_s=3600)


# lease expiry

async def test_lease_expiry_backs_off_exponentially_up_to_the_cap_then_fails(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=1, retry_backoff_s=4.0, max_attempts=4)
    claimed_at = NOW
    [c] = await claim(store, now=claimed_at)
    for attempt, wait in [(1, 4.0), (2, 6.0), (3, 6.0)]:  # 4, then 8 and 16 capped at 6
        reaped_at = claimed_at + LEASE_S + 1
        assert await reap(store, reaped_at, backoff_max_s=6.0) == 1
        item = await store.get_item(batch.id, c.rowid)
        assert item is not None and (item.status, item.attempts) == ("queued", attempt)
        assert item.error is not None and item.error["code"] == "lease_expired"
        assert await claim(store, now=reaped_at + wait - 0.5) == []
        claimed_at = reaped_at + wait
        [c] = await claim(store, now=claimed_at)
        assert c.attempts == attempt + 1

    failed_at = claimed_at + LEASE_S + 1
    assert await reap(store, failed_at, backoff_max_s=6.0) == 1

    [item] = await store.list_items(batch.id, status=None, after_seq=-1, limit=10)
    assert (item.status, item.attempts) == ("failed", 4)
    assert item.error == {"code": "lease_expired",
                          "message": "the worker running this item stopped"}
    done = await fetch(store, batch.id)
    assert (done.status, done.n_failed, done.n_running) == ("failed", 1, 0)
    assert done.reserved_usd == pytest.approx(0.0)
    assert done.finished_at == failed_at
    assert await reap(store, failed_at + 100) == 0  # nothing left to expire


async def test_lease_expiry_in_a_stopped_batch_ends_the_item_instead_of_retrying(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2, parallelism=1, max_attempts=3)
    [a] = await claim(store)
    assert await store.stop_batch(batch.id, reason=StopReason.CANCELLED, detail=None,
                                  now=NOW + 1, cancel_running=False)

    assert await reap(store, NOW + LEASE_S + 1) == 1

    item = await store.get_item(batch.id, a.rowid)
    assert item is not None and item.status == "cancelled"
    done = await fetch(store, batch.id)
    assert (done.status, done.n_cancelled, done.n_queued, done.n_running) == (
        "cancelled", 2, 0, 0)
    assert done.finished_at == NOW + LEASE_S + 1
    assert await claim(store, now=NOW + 1000) == []


# fencing

async def test_fencing_ignores_the_late_outcome_of_a_lease_the_reaper_failed(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=1, max_attempts=1)
    [a] = await claim(store)
    assert await reap(store, NOW + LEASE_S + 1) == 1

    assert await store.finish_items([ok(a, cost_usd=0.5)], now=NOW + LEASE_S + 2) == 0

    [item] = await store.list_items(batch.id, status=None, after_seq=-1, limit=10)
    assert (item.status, item.output) == ("failed", None)
    assert item.error is not None and item.error["code"] == "lease_expired"
    done = await fetch(store, batch.id)
    assert counts(done) == {
        "total": 1, "queued": 0, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 0,
    }
    assert (done.status, done.actual_usd) == ("failed", 0)


async def test_fencing_a_stale_retry_does_not_requeue_an_item_leased_again(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=1, max_attempts=3, retry_backoff_s=1.0)
    [first] = await claim(store)
    assert await reap(store, NOW + LEASE_S + 1) == 1
    [second] = await claim(store, now=NOW + LEASE_S + 10)
    assert (second.rowid, second.fence) == (first.rowid, first.fence + 1)

    stale = Outcome(rowid=first.rowid, fence=first.fence, status="queued", retry_at=NOW + 99)
    assert await store.finish_items([stale, failed(first)], now=NOW + LEASE_S + 11) == 0

    running = await fetch(store, batch.id)
    assert (running.n_running, running.n_queued, running.n_failed) == (1, 0, 0)
    assert await store.finish_items([ok(second)], now=NOW + LEASE_S + 12) == 1
    done = await fetch(store, batch.id)
    assert (done.status, done.n_succeeded, done.n_queued) == ("completed", 1, 0)


# claims under a budget cap

async def test_claim_under_a_budget_cap_serves_the_other_batches_in_the_same_claim(
    store: Store, make_batch: MakeBatch
) -> None:
    capped = await make_batch(items=5, est_usd=0.1, budget_usd=0.25)
    free = await make_batch(items=3, est_usd=0.1)

    got = await claim(store, limit=10)

    by_batch = {b: sum(1 for c in got if c.batch_id == b) for b in (capped.id, free.id)}
    assert by_batch == {capped.id: 2, free.id: 3}
    after = await fetch(store, capped.id)
    assert (after.stop_reason, after.n_running, after.n_queued) == (None, 2, 3)
    assert after.reserved_usd == pytest.approx(0.2)


async def test_claim_checks_the_budget_again_for_each_share_of_one_claim(
    store: Store, make_batch: MakeBatch
) -> None:
    # The narrow batch takes one slot of the first round, so the capped one is dealt a
    # second share in the same claim: that share must see what the first reserved.
    capped = await make_batch(items=6, est_usd=0.1, budget_usd=0.35)
    await make_batch(items=3, parallelism=1)

    got = await claim(store, limit=6)

    assert sum(1 for c in got if c.batch_id == capped.id) == 3
    assert len(got) == 4
    after = await fetch(store, capped.id)
    assert after.reserved_usd == pytest.approx(0.3)
    assert after.stop_reason is None


async def test_claim_stops_a_batch_whose_budget_nothing_fits_and_serves_the_others(
    store: Store, make_batch: MakeBatch
) -> None:
    capped = await make_batch(items=2, est_usd=0.1, budget_usd=0.05)
    free = await make_batch(items=2)

    got = await claim(store)

    assert {c.batch_id for c in got} == {free.id}
    stopped = await fetch(store, capped.id)
    assert (stopped.stop_reason, stopped.status, stopped.n_cancelled) == (
        StopReason.BUDGET_EXCEEDED, "failed", 2)
    assert stopped.finished_at == NOW


# pull delivery

async def test_take_results_hands_out_in_seq_order_whatever_the_finishing_order(
    store: Store,
) -> None:
    batch = await contract.make_chunked(store, [contract.records(1, i) for i in range(4)])
    claimed = sorted(await claim(store), key=lambda c: c.seq)
    await store.finish_items([ok(claimed[3]), failed(claimed[0]), ok(claimed[2])], now=NOW + 1)

    taken = await store.take_results(batch.id, limit=10, now=NOW + 2)

    assert [r.seq for r in taken] == [0, 2, 3]
    assert await store.take_results(batch.id, limit=10, now=NOW + 3) == []
    await store.finish_items([ok(claimed[1])], now=NOW + 4)
    assert [r.seq for r in await store.take_results(batch.id, limit=10, now=NOW + 5)] == [1]
    assert (await fetch(store, batch.id)).n_undelivered == 0


async def test_postgres_reaper_refreshes_stale_statistics_of_items() -> None:
    # After a large intake the planner must not read items as the handful of rows its
    # last statistics said (a claim then sorts every queued item): the reaper gathers
    # them when autoanalyze has not, late or off (as on this project's CI machine).
    import psycopg

    from batchd.store.postgres import PostgresStore

    url = create_pg_database()
    store = Database(PostgresStore(url, min_connections=1, max_connections=2))
    try:
        await store.open()
        await contract.batch_maker(store)(items=12_000)

        def analyzed() -> bool:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT last_analyze IS NOT NULL, last_autoanalyze IS NOT NULL"
                    " FROM pg_stat_user_tables WHERE relname = 'items'").fetchone()
            return row is not None and any(row)

        # Activity statistics reach the shared counters within a second or so.
        for _ in range(50):
            await reap(store, NOW)
            if analyzed():
                break
            await asyncio.sleep(0.2)
        assert analyzed()
        await reap(store, NOW)  # fresh now: nothing more to do
    finally:
        await store.close()
        drop_database(url)


async def test_postgres_reaper_vacuums_items_when_dead_rows_pile_up() -> None:
    # Each claim steps over the index entries of the batch's claimed items until a vacuum
    # removes them: the reaper vacuums items when autovacuum has not (late, or off as on
    # this project's CI machine), and claims are quick again.
    import psycopg

    from batchd.store.postgres import PostgresStore

    url = create_pg_database()
    store = Database(PostgresStore(url, min_connections=1, max_connections=2))
    try:
        await store.open()
        # Two dead versions of each item: 70,000 dead rows, past 50,000 and a fifth.
        batch = await contract.batch_maker(store)(items=35_000)
        while claimed := await claim(store, limit=5000):
            await store.finish_items([ok(c) for c in claimed], now=NOW + 1)

        def vacuums() -> int:
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT vacuum_count + autovacuum_count, n_dead_tup"
                    " FROM pg_stat_user_tables WHERE relname = 'items'").fetchone()
            assert row is not None
            return int(row[0])

        # Activity statistics reach the shared counters within a second or so.
        for _ in range(50):
            await reap(store, NOW)
            if vacuums():
                break
            await asyncio.sleep(0.2)
        assert vacuums() >= 1
        assert (await fetch(store, batch.id)).n_succeeded == 35_000
    finally:
        await store.close()
        drop_database(url)
