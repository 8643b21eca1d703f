"""The Store contract: every backend must pass these, through the Store interface only.

To add a backend, add one factory to ``BACKENDS``: an async context manager that
yields an unopened store on a fresh, empty database (``tmp_path`` is the test's
own directory) and cleans up after it. A backend whose server cannot be reached
fails its tests: the suite must never quietly lose half of the contract.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchd.core import quotas
from batchd.core.db import Database
from batchd.core.quotas import Metering, Quota
from batchd.domain import errors
from batchd.domain.models import Batch, BatchSpec, ClaimedItem, Outcome, new_id
from batchd.domain.records import BatchQuery, StagedItem
from batchd.store.base import Store
from tests.conftest import PG_ADMIN_URL, create_pg_database, drop_database, scaled

NOW = 1_700_000_000.0  # 2023-11-14, UTC
PERIOD = "2023-11"
LEASE_S = 30.0

pytestmark = pytest.mark.timeout(scaled(30))


@contextlib.asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    from batchd.store.sqlite import SqliteStore

    yield Database(SqliteStore(f"sqlite:///{tmp_path / 'contract.db'}"))


@contextlib.asynccontextmanager
async def postgres_store(tmp_path: Path) -> AsyncIterator[Store]:
    import psycopg

    from batchd.store.postgres import PostgresStore

    unreachable = None
    try:
        url = create_pg_database()
    except psycopg.OperationalError as exc:
        unreachable = exc
    if unreachable is not None:
        pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN_URL} (BATCHD_TEST_PG_URL): "
                    f"{unreachable}", pytrace=False)
    try:
        yield Database(PostgresStore(url, min_connections=1, max_connections=4))
    finally:
        drop_database(url)


BACKENDS: dict[str, Callable[[Path], contextlib.AbstractAsyncContextManager[Store]]] = {
    "sqlite": sqlite_store,
    "postgres": postgres_store,
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        s = await stack.enter_async_context(BACKENDS[request.param](tmp_path))
        await s.open()
        stack.push_async_callback(s.close)
        yield s


def stage_token(now: float) -> str:
    # Same shape as BatchManager's tokens: the store reads an upload's age from it.
    return f"{int(now)}-{secrets.token_hex(6)}"


MakeBatch = Callable[..., Awaitable[Batch]]


@pytest.fixture
def make_batch(store: Store) -> MakeBatch:
    return batch_maker(store)


def batch_maker(store: Store) -> MakeBatch:
    """Factory: create, fill and commit a batch; returns it as the store reports it.

    ``items`` inputs are ``{"n": i}`` (or lists of ``records_per_item`` such records).
    Other keyword arguments are BatchSpec settings.
    """

    async def make(
        tenant: str = "acme", *, items: int = 3, owner: str = "alice", close: bool = True,
        est_usd: float = 0.0, now: float = NOW, **settings: Any,
    ) -> Batch:
        t = await store.ensure_tenant(tenant, tier="free", now=now)
        rpi = int(settings.get("records_per_item", 1))
        batch_id = new_id("bat")
        await store.create_batch(
            batch_id=batch_id, tenant_id=t.id, owner=owner,
            spec=BatchSpec(task="echo", version="1.0.0", **settings), now=now,
        )
        stage = stage_token(now)
        staged = [
            StagedItem(
                rpi,
                orjson.dumps({"n": i} if rpi == 1 else [{"n": i, "r": r} for r in range(rpi)]),
                est_usd,
            )
            for i in range(items)
        ]
        if staged:
            await store.stage_items(batch_id, stage, staged)
        assert await store.commit_stage(batch_id, stage, close=close, now=now) == batch_id
        batch = await store.get_batch(batch_id, tenant_id=t.id)
        assert batch is not None
        return batch

    return make


async def claim(
    store: Store, *, owner: str = "w1", limit: int = 100, now: float = NOW,
    tenant_cap: int = 0,
) -> list[ClaimedItem]:
    return await store.claim_items(
        owner=owner, limit=limit, now=now, lease_s=LEASE_S, tenant_cap=tenant_cap
    )


async def fetch(store: Store, batch_id: str) -> Batch:
    batch = await store.get_batch(batch_id, tenant_id=None)
    assert batch is not None
    return batch


def ok(item: ClaimedItem, **kw: Any) -> Outcome:
    fields: dict[str, Any] = {
        "output": orjson.dumps({"done": item.seq}), "records_succeeded": item.n_records,
        "finished_at": NOW + 1, **kw,
    }
    return Outcome(rowid=item.rowid, fence=item.fence, status="succeeded", **fields)


def failed(item: ClaimedItem, **kw: Any) -> Outcome:
    fields: dict[str, Any] = {
        "error": {"code": "handler_error", "message": "boom"},
        "records_failed": item.n_records, "finished_at": NOW + 1, **kw,
    }
    return Outcome(rowid=item.rowid, fence=item.fence, status="failed", **fields)


def counts(b: Batch) -> dict[str, int]:
    return {
        "total": b.n_total, "queued": b.n_queued, "running": b.n_running,
        "succeeded": b.n_succeeded, "failed": b.n_failed, "cancelled": b.n_cancelled,
    }


# tenants and keys

async def test_tenant_ensure_is_idempotent(store: Store) -> None:
    first = await store.ensure_tenant("acme", tier="pro", now=NOW)
    again = await store.ensure_tenant("acme", tier="free", now=NOW + 5)

    assert again == first
    assert again.tier == "pro"
    assert await store.get_tenant("acme") == first
    assert await store.get_tenant("nobody") is None
    other = await store.ensure_tenant("globex", tier="free", now=NOW)
    assert other.id != first.id


async def test_key_found_by_hash_until_revoked(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="pro", now=NOW)
    await store.create_key(
        key_id="key_1", tenant_id=t.id, key_hash="h1", prefix="bd_abc", role="user",
        tier="pro", owner="alice", now=NOW,
    )

    found = await store.key_by_hash("h1")
    assert found is not None
    key, stored_hash = found
    assert stored_hash == "h1"
    assert (key.id, key.tenant_id, key.tenant_name, key.role, key.tier, key.owner, key.prefix) == (
        "key_1", t.id, "acme", "user", "pro", "alice", "bd_abc"
    )
    assert key.revoked_at is None
    assert await store.key_by_hash("other") is None

    assert await store.revoke_key("key_1", now=NOW + 1) is True
    assert await store.key_by_hash("h1") is None
    assert await store.revoke_key("key_1", now=NOW + 2) is False
    assert await store.revoke_key("key_missing", now=NOW + 2) is False
    [listed] = await store.list_keys(t.id)
    assert listed.revoked_at == NOW + 1


async def test_key_count_by_role_ignores_revoked(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="pro", now=NOW)
    other = await store.ensure_tenant("globex", tier="free", now=NOW)
    for n, (tenant, role) in enumerate([(t, "admin"), (t, "user"), (other, "admin"), (t, "user")]):
        await store.create_key(
            key_id=f"key_{n}", tenant_id=tenant.id, key_hash=f"h{n}", prefix="bd_", role=role,
            tier="pro", owner="o", now=NOW + n,
        )

    assert await store.count_keys(role="admin") == 2
    assert await store.count_keys(role="user") == 2
    assert await store.count_keys(role="supervisor") == 0
    await store.revoke_key("key_0", now=NOW + 10)
    assert await store.count_keys(role="admin") == 1
    assert [k.id for k in await store.list_keys(t.id)] == ["key_0", "key_1", "key_3"]
    assert len(await store.list_keys(None)) == 4


# ingest

async def test_batch_invisible_until_first_commit(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    await store.create_batch(
        batch_id="bat_new", tenant_id=t.id, owner="alice",
        spec=BatchSpec(task="echo", version="1.0.0"), now=NOW,
    )
    stage = stage_token(NOW)
    await store.stage_items("bat_new", stage, [StagedItem(1, b'{"n": 1}', 0.5)] * 2)

    assert await store.get_batch("bat_new", tenant_id=t.id) is None
    assert await store.list_batches(
        tenant_id=t.id, owner=None, status=None, before_pk=None, limit=10
    ) == []
    assert await claim(store) == []

    assert await store.commit_stage("bat_new", stage, close=False, now=NOW + 1) == "bat_new"
    batch = await fetch(store, "bat_new")
    assert batch.status == "open"
    assert counts(batch) == {
        "total": 2, "queued": 2, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0,
    }
    assert batch.r_total == 2
    assert batch.est_usd == pytest.approx(1.0)
    assert batch.in_bytes > 0
    assert [i.seq for i in await store.list_items(
        "bat_new", status=None, after_seq=-1, limit=10
    )] == [0, 1]


async def test_append_invisible_until_committed(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=2, close=False)
    stage = stage_token(NOW)
    await store.stage_items(batch.id, stage, [StagedItem(1, b'{"n": 9}', 0.0)] * 3)

    assert counts(await fetch(store, batch.id))["total"] == 2
    assert len(await store.list_items(batch.id, status=None, after_seq=-1, limit=10)) == 2
    claimed = await claim(store)
    assert {c.seq for c in claimed} == {0, 1}

    await store.commit_stage(batch.id, stage, close=True, now=NOW + 1)
    after = await fetch(store, batch.id)
    assert after.status == "closed"
    assert after.closed_at == NOW + 1
    assert (after.n_total, after.n_queued, after.n_running) == (5, 3, 2)
    assert [i.seq for i in await store.list_items(
        batch.id, status="queued", after_seq=-1, limit=10
    )] == [2, 3, 4]


async def test_commit_close_with_no_items_completes(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=0, close=True)

    assert batch.status == "completed"
    assert batch.n_total == 0
    assert batch.finished_at == NOW


async def test_discard_stage_drops_created_batch(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    await store.create_batch(
        batch_id="bat_gone", tenant_id=t.id, owner="alice",
        spec=BatchSpec(task="echo", version="1.0.0"), now=NOW,
    )
    stage = stage_token(NOW)
    await store.stage_items("bat_gone", stage, [StagedItem(1, b"{}", 0.0)] * 2)

    await store.discard_stage("bat_gone", stage, drop_batch=True)

    assert await store.get_batch("bat_gone", tenant_id=None) is None
    assert await claim(store) == []
    with pytest.raises(errors.NotFound):
        await store.commit_stage("bat_gone", stage, close=True, now=NOW)


async def test_discard_stage_drops_only_that_append(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=2, close=False)
    kept, dropped = stage_token(NOW), stage_token(NOW)
    await store.stage_items(batch.id, kept, [StagedItem(1, b'{"k": 1}', 0.0)])
    await store.stage_items(batch.id, dropped, [StagedItem(1, b'{"d": 1}', 0.0)] * 2)

    await store.discard_stage(batch.id, dropped, drop_batch=True)  # a live batch stays
    await store.commit_stage(batch.id, dropped, close=False, now=NOW)
    assert (await fetch(store, batch.id)).n_total == 2

    await store.commit_stage(batch.id, kept, close=True, now=NOW)
    after = await fetch(store, batch.id)
    assert after.n_total == 3
    inputs = [orjson.loads(i.input) for i in await store.list_items(
        batch.id, status=None, after_seq=-1, limit=10
    )]
    assert inputs == [{"n": 0}, {"n": 1}, {"k": 1}]


async def test_append_to_closed_batch_conflicts_and_leaves_nothing(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2, close=True)
    stage = stage_token(NOW)
    await store.stage_items(batch.id, stage, [StagedItem(1, b'{"late": 1}', 1.0)] * 2)

    with pytest.raises(errors.Conflict):
        await store.commit_stage(batch.id, stage, close=False, now=NOW + 1)

    after = await fetch(store, batch.id)
    assert counts(after) == counts(batch)
    assert (after.r_total, after.est_usd, after.in_bytes) == (
        batch.r_total, batch.est_usd, batch.in_bytes
    )
    assert after.status == "closed"
    assert len(await store.list_items(batch.id, status=None, after_seq=-1, limit=10)) == 2
    assert len(await claim(store)) == 2


async def test_append_to_stopped_batch_conflicts(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1, close=False)
    assert await store.stop_batch(batch.id, reason="cancelled", detail=None, now=NOW)
    stage = stage_token(NOW)
    await store.stage_items(batch.id, stage, [StagedItem(1, b"{}", 0.0)])

    with pytest.raises(errors.Conflict):
        await store.commit_stage(batch.id, stage, close=False, now=NOW)
    assert (await fetch(store, batch.id)).n_total == 1


# idempotency

async def test_idempotency_key_reuse_returns_first_batch(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    spec = BatchSpec(task="echo", version="1.0.0")
    for batch_id in ("bat_first", "bat_second"):
        await store.create_batch(
            batch_id=batch_id, tenant_id=t.id, owner="alice", spec=spec, now=NOW
        )
    s1, s2 = stage_token(NOW), stage_token(NOW)
    await store.stage_items("bat_first", s1, [StagedItem(1, b'{"a": 1}', 0.0)])
    await store.stage_items("bat_second", s2, [StagedItem(1, b'{"b": 1}', 0.0)] * 3)

    assert await store.commit_stage(
        "bat_first", s1, close=True, now=NOW, idempotency_key="idem-1", request_hash="hash-1"
    ) == "bat_first"
    assert await store.commit_stage(
        "bat_second", s2, close=True, now=NOW, idempotency_key="idem-1", request_hash="hash-2"
    ) == "bat_first"

    assert await store.get_batch("bat_second", tenant_id=None) is None
    first = await fetch(store, "bat_first")
    assert first.n_total == 1
    assert (first.idempotency_key, first.request_hash) == ("idem-1", "hash-1")
    found = await store.find_batch_by_idempotency(t.id, "idem-1")
    assert found is not None and found.id == "bat_first"
    assert await store.find_batch_by_idempotency(t.id, "idem-2") is None
    assert len(await claim(store)) == 1  # the dropped batch's items are gone too


async def test_idempotency_key_is_scoped_by_tenant(store: Store) -> None:
    spec = BatchSpec(task="echo", version="1.0.0")
    for name in ("acme", "globex"):
        t = await store.ensure_tenant(name, tier="free", now=NOW)
        await store.create_batch(
            batch_id=f"bat_{name}", tenant_id=t.id, owner="o", spec=spec, now=NOW
        )
        stage = stage_token(NOW)
        assert await store.commit_stage(
            f"bat_{name}", stage, close=True, now=NOW, idempotency_key="same"
        ) == f"bat_{name}"
    globex = await store.get_tenant("globex")
    assert globex is not None
    found = await store.find_batch_by_idempotency(globex.id, "same")
    assert found is not None and found.id == "bat_globex"


# claiming

async def test_claim_serves_higher_priority_first(store: Store, make_batch: MakeBatch) -> None:
    low = await make_batch(items=3, priority=10)
    high = await make_batch(items=3, priority=90, now=NOW + 1)

    first = await claim(store, limit=4)
    assert [c.batch_id for c in first] == [high.id] * 3 + [low.id]
    assert sorted(c.seq for c in first[:3]) == [0, 1, 2]
    assert all(c.attempts == 1 for c in first)
    assert {orjson.loads(c.input)["n"] for c in first} == {0, 1, 2}
    rest = await claim(store, limit=10)
    assert [c.batch_id for c in rest] == [low.id, low.id]


async def test_claim_respects_batch_parallelism(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=5, parallelism=2)

    first = await claim(store, limit=10)
    assert len(first) == 2
    assert await claim(store, limit=10) == []
    running = await fetch(store, batch.id)
    assert (running.n_running, running.n_queued) == (2, 3)

    await store.finish_items([ok(first[0])], now=NOW + 1)
    assert [c.seq for c in await claim(store, limit=10, now=NOW + 1)] == [2]


async def test_claim_respects_tenant_cap(store: Store, make_batch: MakeBatch) -> None:
    await make_batch("acme", items=4)
    await make_batch("acme", items=4)
    other = await make_batch("globex", items=4)

    got = await claim(store, limit=10, tenant_cap=3)

    per_tenant: dict[str, int] = {}
    for c in got:
        per_tenant[c.tenant_id] = per_tenant.get(c.tenant_id, 0) + 1
    assert sorted(per_tenant.values()) == [3, 3]
    assert per_tenant[other.tenant_id] == 3
    assert await claim(store, limit=10, tenant_cap=3) == []


async def test_claim_waits_for_run_after(store: Store, make_batch: MakeBatch) -> None:
    later = await make_batch(items=2, run_after=NOW + 60)

    assert await claim(store, now=NOW + 59) == []
    got = await claim(store, now=NOW + 61)
    assert {c.batch_id for c in got} == {later.id}
    assert len(got) == 2


async def test_claim_fence_grows_with_each_claim(store: Store, make_batch: MakeBatch) -> None:
    await make_batch(items=1, retry_backoff_s=1.0)
    [first] = await claim(store, owner="w1")

    await store.reap(now=NOW + LEASE_S + 1, retry_backoff_max_s=60, staging_ttl_s=3600)
    [second] = await claim(store, owner="w2", now=NOW + LEASE_S + 10)

    assert second.rowid == first.rowid
    assert second.fence > first.fence
    assert second.attempts == first.attempts + 1


async def test_claim_shares_equal_priority_batches_fairly(
    store: Store, make_batch: MakeBatch
) -> None:
    a = await make_batch(items=10)
    b = await make_batch(items=10, now=NOW + 1)

    first = await claim(store, limit=2)
    assert sorted(c.batch_id for c in first) == sorted([a.id, b.id])
    second = await claim(store, limit=4)
    assert sorted(c.batch_id for c in second) == sorted([a.id, a.id, b.id, b.id])


async def test_claim_prefers_tenant_with_fewer_running(
    store: Store, make_batch: MakeBatch
) -> None:
    busy = await make_batch("acme", items=2)
    await claim(store, limit=2)
    await make_batch("acme", items=5, now=NOW - 10)
    quiet = await make_batch("globex", items=5, now=NOW + 10)

    [got] = await claim(store, limit=1)

    assert got.batch_id == quiet.id
    assert (await fetch(store, busy.id)).n_running == 2


async def test_claim_skips_waiting_items_of_higher_priority(
    store: Store, make_batch: MakeBatch
) -> None:
    high = await make_batch(items=1, priority=90)
    [first] = await claim(store)
    retry = Outcome(rowid=first.rowid, fence=first.fence, status="queued", retry_at=NOW + 60)
    await store.finish_items([retry], now=NOW + 1)
    low = await make_batch(items=2, priority=10)

    got = await claim(store, now=NOW + 2)

    assert [c.batch_id for c in got] == [low.id, low.id]
    assert [c.batch_id for c in await claim(store, now=NOW + 61)] == [high.id]


# finishing

async def test_finish_ignores_stale_fence(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1, retry_backoff_s=1.0)
    [stale] = await claim(store, owner="w1")
    await store.reap(now=NOW + LEASE_S + 1, retry_backoff_max_s=60, staging_ttl_s=3600)
    [fresh] = await claim(store, owner="w2", now=NOW + LEASE_S + 10)

    assert await store.finish_items([ok(stale)], now=NOW + 50) == 0
    item = await store.get_item(batch.id, fresh.rowid)
    assert item is not None and item.status == "running" and item.output is None

    assert await store.finish_items([failed(fresh)], now=NOW + 51) == 1
    item = await store.get_item(batch.id, fresh.rowid)
    assert item is not None and item.status == "failed"
    assert item.error == {"code": "handler_error", "message": "boom"}
    assert counts(await fetch(store, batch.id))["failed"] == 1


async def test_finish_applies_the_fresh_outcome_behind_a_stale_one_in_one_group(
    store: Store, make_batch: MakeBatch
) -> None:
    # A worker whose group commit failed (database away) still holds the old claim's
    # outcome when it claims the reaped item again: both go in the next group.
    batch = await make_batch(items=1, retry_backoff_s=1.0)
    [stale] = await claim(store, owner="w1")
    await store.reap(now=NOW + LEASE_S + 1, retry_backoff_max_s=60, staging_ttl_s=3600)
    [fresh] = await claim(store, owner="w1", now=NOW + LEASE_S + 10)
    assert fresh.fence != stale.fence

    assert await store.finish_items([failed(stale), ok(fresh)], now=NOW + 50) == 1
    item = await store.get_item(batch.id, fresh.rowid)
    assert item is not None and item.status == "succeeded" and item.attempts == 2
    assert counts(await fetch(store, batch.id))["succeeded"] == 1
    assert counts(await fetch(store, batch.id))["failed"] == 0


async def test_finish_moves_counters_exactly_once(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=2, est_usd=0.5)
    a, b = await claim(store)
    reserved = await fetch(store, batch.id)
    assert reserved.reserved_usd == pytest.approx(1.0)
    assert reserved.started_at == NOW

    done = ok(a, cost_usd=0.25, tokens_in=10, tokens_out=5)
    assert await store.finish_items([done, done], now=NOW + 1) == 1
    assert await store.finish_items([ok(a)], now=NOW + 2) == 0

    after = await fetch(store, batch.id)
    assert counts(after) == {
        "total": 2, "queued": 0, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 0,
    }
    assert (after.r_succeeded, after.tokens_in, after.tokens_out) == (1, 10, 5)
    assert after.actual_usd == pytest.approx(0.25)
    assert after.reserved_usd == pytest.approx(0.5)
    assert after.out_bytes == len(done.output or b"")
    item = await store.get_item(batch.id, a.rowid)
    assert item is not None
    assert item.status == "succeeded"
    assert orjson.loads(item.output or b"") == {"done": a.seq}
    assert item.usage == {"tokens_in": 10, "tokens_out": 5, "cost_usd": 0.25}
    assert item.finished_at == NOW + 1
    assert after.status == "closed"

    await store.finish_items([ok(b)], now=NOW + 3)
    assert (await fetch(store, batch.id)).status == "completed"


async def test_finish_retry_requeues_after_delay(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1)
    [first] = await claim(store)
    retry = Outcome(
        rowid=first.rowid, fence=first.fence, status="queued",
        error={"code": "handler_error", "message": "try again"}, retry_at=NOW + 10,
    )

    assert await store.finish_items([retry], now=NOW + 1) == 1
    waiting = await fetch(store, batch.id)
    assert (waiting.n_queued, waiting.n_running, waiting.status) == (1, 0, "closed")
    item = await store.get_item(batch.id, first.rowid)
    assert item is not None and item.status == "queued" and item.attempts == 1

    assert await claim(store, now=NOW + 9) == []
    [again] = await claim(store, now=NOW + 11)
    assert (again.rowid, again.attempts) == (first.rowid, 2)


async def test_fail_fast_stops_batch_and_cancels_queued(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=5, fail_fast=True, parallelism=2)
    a, b = await claim(store)

    await store.finish_items([failed(a)], now=NOW + 1)

    stopped = await fetch(store, batch.id)
    assert stopped.stop_reason == "fail_fast"
    assert stopped.error is not None and stopped.error["code"] == "fail_fast"
    assert counts(stopped) == {
        "total": 5, "queued": 0, "running": 1, "succeeded": 0, "failed": 1, "cancelled": 3,
    }
    assert await claim(store, now=NOW + 2) == []
    cancelled = await store.list_items(batch.id, status="cancelled", after_seq=-1, limit=10)
    assert [i.seq for i in cancelled] == [2, 3, 4]
    assert all(i.error is not None and i.error["code"] == "fail_fast" for i in cancelled)
    assert await store.cancel_requests(owner="w1") == [b.rowid]
    assert stopped.finished_at is None

    await store.finish_items([ok(b)], now=NOW + 3)
    done = await fetch(store, batch.id)
    assert done.status == "partial"
    assert done.finished_at == NOW + 3


async def test_fail_fast_with_nothing_succeeded_fails(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=3, fail_fast=True, parallelism=1)
    [a] = await claim(store)
    await store.finish_items([failed(a)], now=NOW + 1)

    assert (await fetch(store, batch.id)).status == "failed"


@pytest.mark.parametrize(
    ("outcomes", "max_error_pct", "status"),
    [
        ("ssss", 100.0, "completed"),
        ("ssff", 100.0, "partial"),
        ("ffff", 100.0, "failed"),
        ("sssf", 25.0, "partial"),
        ("ssff", 25.0, "failed"),
    ],
)
async def test_finished_batch_status_follows_outcomes(
    store: Store, make_batch: MakeBatch, outcomes: str, max_error_pct: float, status: str
) -> None:
    batch = await make_batch(items=len(outcomes), max_error_pct=max_error_pct)
    claimed = await claim(store)

    await store.finish_items(
        [ok(c) if o == "s" else failed(c) for c, o in zip(claimed, outcomes, strict=True)],
        now=NOW + 1,
    )

    done = await fetch(store, batch.id)
    assert done.status == status
    assert done.finished_at == NOW + 1


async def test_failed_records_inside_succeeded_items_count(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2, records_per_item=5, max_error_pct=30.0)
    a, b = await claim(store)

    await store.finish_items(
        [ok(a), ok(b, records_succeeded=2, records_failed=3)], now=NOW + 1
    )

    done = await fetch(store, batch.id)
    assert (done.r_total, done.r_succeeded, done.r_failed) == (10, 7, 3)
    assert done.n_succeeded == 2
    assert done.status == "partial"


async def test_record_error_rate_above_limit_fails_batch(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2, records_per_item=5, max_error_pct=20.0)
    a, b = await claim(store)

    await store.finish_items([ok(a), ok(b, records_succeeded=2, records_failed=3)], now=NOW + 1)

    assert (await fetch(store, batch.id)).status == "failed"


async def test_open_batch_finishes_only_when_closed(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1, close=False)
    [a] = await claim(store)
    await store.finish_items([ok(a)], now=NOW + 1)
    assert (await fetch(store, batch.id)).status == "open"

    assert await store.close_batch(batch.id, now=NOW + 2) is True
    done = await fetch(store, batch.id)
    assert (done.status, done.closed_at, done.finished_at) == ("completed", NOW + 2, NOW + 2)
    assert await store.close_batch(batch.id, now=NOW + 3) is False


# cancellation

async def test_cancel_stops_queued_now_and_flags_running(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=5, parallelism=3)
    a, b, c = await claim(store, owner="w1")

    assert await store.stop_batch(batch.id, reason="cancelled", detail="user asked", now=NOW + 1)

    stopped = await fetch(store, batch.id)
    assert stopped.status == "cancelled"
    assert stopped.error == {"code": "cancelled", "message": "user asked"}
    assert counts(stopped) == {
        "total": 5, "queued": 0, "running": 3, "succeeded": 0, "failed": 0, "cancelled": 2,
    }
    assert stopped.finished_at is None
    assert sorted(await store.cancel_requests(owner="w1")) == sorted([a.rowid, b.rowid, c.rowid])
    assert await store.cancel_requests(owner="w2") == []
    assert await claim(store, now=NOW + 2) == []
    assert await store.stop_batch(batch.id, reason="cancelled", detail=None, now=NOW + 2) is False
    assert await store.stop_batch("bat_missing", reason="cancelled", detail=None, now=NOW) is False

    retry = Outcome(rowid=c.rowid, fence=c.fence, status="queued", retry_at=NOW + 3)
    await store.finish_items([ok(a), failed(b), retry], now=NOW + 3)

    items = {i.rowid: i for i in await store.list_items(
        batch.id, status=None, after_seq=-1, limit=10
    )}
    assert items[a.rowid].status == "succeeded"
    assert items[b.rowid].status == "cancelled"
    assert items[c.rowid].status == "cancelled"  # never retried after cancel
    assert items[b.rowid].error is not None and items[b.rowid].error["code"] == "cancelled"
    done = await fetch(store, batch.id)
    assert counts(done) == {
        "total": 5, "queued": 0, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 4,
    }
    assert (done.status, done.finished_at) == ("cancelled", NOW + 3)
    assert await store.cancel_requests(owner="w1") == []


async def test_cancel_sparing_running_items_lets_them_finish(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=5, parallelism=3)
    a, b, c = await claim(store, owner="w1")

    assert await store.stop_batch(
        batch.id, reason="cancelled", detail="enough", now=NOW + 1, cancel_running=False
    )

    stopped = await fetch(store, batch.id)
    assert stopped.status == "cancelled"
    assert counts(stopped) == {
        "total": 5, "queued": 0, "running": 3, "succeeded": 0, "failed": 0, "cancelled": 2,
    }
    assert await store.cancel_requests(owner="w1") == []  # nothing tells the worker to stop
    assert await claim(store, now=NOW + 2) == []

    retry = Outcome(rowid=c.rowid, fence=c.fence, status="queued", retry_at=NOW + 3)
    await store.finish_items([ok(a, cost_usd=0.5), failed(b), retry], now=NOW + 3)

    items = {i.rowid: i for i in await store.list_items(
        batch.id, status=None, after_seq=-1, limit=10
    )}
    assert items[a.rowid].status == "succeeded"
    assert items[b.rowid].status == "failed"  # its own outcome, not a cancel
    assert items[c.rowid].status == "cancelled"  # but never retried after the cancel
    done = await fetch(store, batch.id)
    assert counts(done) == {
        "total": 5, "queued": 0, "running": 0, "succeeded": 1, "failed": 1, "cancelled": 3,
    }
    assert (done.status, done.finished_at) == ("cancelled", NOW + 3)
    assert done.actual_usd == pytest.approx(0.5)


async def test_cancel_of_idle_batch_finishes_it(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=2, close=False)

    assert await store.stop_batch(batch.id, reason="cancelled", detail=None, now=NOW + 1)

    done = await fetch(store, batch.id)
    assert (done.status, done.n_cancelled, done.finished_at) == ("cancelled", 2, NOW + 1)
    assert await store.close_batch(batch.id, now=NOW + 2) is False


# reaping

async def test_reap_requeues_expired_lease_with_delay(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1, retry_backoff_s=5.0, max_attempts=3)
    [a] = await claim(store)

    assert await store.reap(now=NOW + LEASE_S - 1, retry_backoff_max_s=60, staging_ttl_s=3600) == 0
    reap_at = NOW + LEASE_S + 1
    assert await store.reap(now=reap_at, retry_backoff_max_s=60, staging_ttl_s=3600) == 1

    item = await store.get_item(batch.id, a.rowid)
    assert item is not None and item.status == "queued"
    assert item.error is not None and item.error["code"] == "lease_expired"
    assert (await fetch(store, batch.id)).n_queued == 1
    assert await claim(store, now=reap_at + 4) == []
    [again] = await claim(store, now=reap_at + 6)
    assert again.attempts == 2


async def test_reap_fails_item_after_max_attempts(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1, max_attempts=2, retry_backoff_s=1.0)
    t = NOW
    for _ in range(2):
        assert len(await claim(store, now=t)) == 1
        t += LEASE_S + 1
        assert await store.reap(now=t, retry_backoff_max_s=60, staging_ttl_s=3600) == 1
        t += 10

    [item] = await store.list_items(batch.id, status=None, after_seq=-1, limit=10)
    assert (item.status, item.attempts) == ("failed", 2)
    assert item.error is not None and item.error["code"] == "lease_expired"
    assert (await fetch(store, batch.id)).status == "failed"


async def test_reap_expires_batch(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=3, parallelism=1, expires_at=NOW + 10)
    [a] = await claim(store)

    await store.reap(now=NOW + 9, retry_backoff_max_s=60, staging_ttl_s=3600)
    assert (await fetch(store, batch.id)).status == "closed"
    await store.reap(now=NOW + 11, retry_backoff_max_s=60, staging_ttl_s=3600)

    expired = await fetch(store, batch.id)
    assert expired.status == "expired"
    assert (expired.n_cancelled, expired.n_running) == (2, 1)
    assert await store.cancel_requests(owner="w1") == [a.rowid]
    queued_ones = await store.list_items(batch.id, status="cancelled", after_seq=-1, limit=10)
    assert [i.seq for i in queued_ones] == [1, 2]
    assert all(i.error is not None and i.error["code"] == "expired" for i in queued_ones)

    await store.finish_items([failed(a)], now=NOW + 12)
    done = await fetch(store, batch.id)
    assert (done.status, done.n_cancelled, done.finished_at) == ("expired", 3, NOW + 12)


async def test_reap_drops_abandoned_uploads(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1, close=False)
    old, recent = stage_token(NOW), stage_token(NOW + 500)
    await store.stage_items(batch.id, old, [StagedItem(1, b"{}", 0.0)] * 2)
    await store.stage_items(batch.id, recent, [StagedItem(1, b"{}", 0.0)] * 3)
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    await store.create_batch(
        batch_id="bat_abandoned", tenant_id=t.id, owner="alice",
        spec=BatchSpec(task="echo", version="1.0.0"), now=NOW,
    )
    await store.stage_items("bat_abandoned", stage_token(NOW), [StagedItem(1, b"{}", 0.0)])

    await store.reap(now=NOW + 700, retry_backoff_max_s=60, staging_ttl_s=600)

    await store.commit_stage(batch.id, old, close=False, now=NOW + 701)
    assert (await fetch(store, batch.id)).n_total == 1
    await store.commit_stage(batch.id, recent, close=False, now=NOW + 702)
    assert (await fetch(store, batch.id)).n_total == 4
    with pytest.raises(errors.NotFound):
        await store.commit_stage("bat_abandoned", stage_token(NOW), close=True, now=NOW + 703)


async def test_heartbeat_keeps_leases_from_reaper(store: Store, make_batch: MakeBatch) -> None:
    await make_batch(items=2, parallelism=1)
    await make_batch(items=1)
    mine = await claim(store, owner="w1", limit=1)
    theirs = await claim(store, owner="w2", limit=1)

    await store.heartbeat(owner="w1", now=NOW + 20, lease_until=NOW + 20 + LEASE_S, info={})

    assert await store.reap(now=NOW + LEASE_S + 1, retry_backoff_max_s=60, staging_ttl_s=3600) == 1
    kept = await store.get_item(mine[0].batch_id, mine[0].rowid)
    lost = await store.get_item(theirs[0].batch_id, theirs[0].rowid)
    assert kept is not None and kept.status == "running"
    assert lost is not None and lost.status == "queued"
    assert await store.finish_items([ok(mine[0])], now=NOW + 40) == 1
    assert await store.finish_items([ok(theirs[0])], now=NOW + 40) == 0


async def test_heartbeat_renews_only_listed_items(store: Store, make_batch: MakeBatch) -> None:
    await make_batch(items=2)
    tracked, forgotten = await claim(store, owner="w1")

    await store.heartbeat(
        owner="w1", now=NOW + 20, lease_until=NOW + 20 + LEASE_S, info={},
        item_ids=[tracked.rowid],
    )

    assert await store.reap(now=NOW + LEASE_S + 1, retry_backoff_max_s=60, staging_ttl_s=3600) == 1
    kept = await store.get_item(tracked.batch_id, tracked.rowid)
    lost = await store.get_item(forgotten.batch_id, forgotten.rowid)
    assert kept is not None and kept.status == "running"
    assert lost is not None and lost.status == "queued"


# budgets

async def test_budget_stops_dispatch_at_cap(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=5, est_usd=0.1, budget_usd=0.25)

    first = await claim(store)
    assert len(first) == 2
    assert (await fetch(store, batch.id)).reserved_usd == pytest.approx(0.2)
    assert await claim(store) == []  # the third would pass the cap while two still run
    assert (await fetch(store, batch.id)).stop_reason is None

    await store.finish_items([ok(c, cost_usd=0.1) for c in first], now=NOW + 1)
    assert await claim(store, now=NOW + 2) == []

    done = await fetch(store, batch.id)
    assert done.stop_reason == "budget_exceeded"
    assert counts(done) == {
        "total": 5, "queued": 0, "running": 0, "succeeded": 2, "failed": 0, "cancelled": 3,
    }
    assert done.status == "partial"
    assert done.actual_usd == pytest.approx(0.2)
    cancelled = await store.list_items(batch.id, status="cancelled", after_seq=-1, limit=10)
    assert [i.seq for i in cancelled] == [2, 3, 4]
    assert all(i.error is not None and i.error["code"] == "budget_exceeded" for i in cancelled)


async def test_budget_leaves_an_item_waiting_for_its_retry_queued(
    store: Store, make_batch: MakeBatch
) -> None:
    # Nothing ready and nothing running is not a reached cap: the item will be back.
    batch = await make_batch(items=1, est_usd=0.1, budget_usd=1.0)
    [first] = await claim(store)
    retry = Outcome(rowid=first.rowid, fence=first.fence, status="queued", retry_at=NOW + 60)
    assert await store.finish_items([retry], now=NOW + 1) == 1

    assert await claim(store, now=NOW + 2) == []
    waiting = await fetch(store, batch.id)
    assert waiting.stop_reason is None
    assert waiting.status == "closed"
    assert counts(waiting)["queued"] == 1 and counts(waiting)["cancelled"] == 0

    [again] = await claim(store, now=NOW + 61)
    assert again.rowid == first.rowid and again.attempts == 2


async def test_budget_room_freed_by_cheaper_actuals(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=3, est_usd=0.1, budget_usd=0.2)
    first = await claim(store)
    assert len(first) == 2

    await store.finish_items([ok(c, cost_usd=0.01) for c in first], now=NOW + 1)

    assert len(await claim(store, now=NOW + 2)) == 1
    assert (await fetch(store, batch.id)).stop_reason is None


# reads

async def test_list_batches_pages_newest_first(store: Store, make_batch: MakeBatch) -> None:
    made = [await make_batch(items=0, close=False, now=NOW + i) for i in range(5)]
    tenant_id = made[0].tenant_id

    page1 = await store.list_batches(
        tenant_id=tenant_id, owner=None, status=None, before_pk=None, limit=2
    )
    page2 = await store.list_batches(
        tenant_id=tenant_id, owner=None, status=None, before_pk=page1[-1].pk, limit=2
    )
    page3 = await store.list_batches(
        tenant_id=tenant_id, owner=None, status=None, before_pk=page2[-1].pk, limit=2
    )

    assert [b.id for b in page1 + page2 + page3] == [b.id for b in reversed(made)]


async def test_list_batches_filters_owner_status_and_tenant(
    store: Store, make_batch: MakeBatch
) -> None:
    mine_open = await make_batch(owner="alice", items=1, close=False)
    mine_done = await make_batch(owner="alice", items=0)
    bobs = await make_batch(owner="bob", items=1, close=False)
    await make_batch("globex", owner="alice", items=1, close=False)
    tenant_id = mine_open.tenant_id

    async def ids(owner: str | None, status: str | None) -> list[str]:
        rows = await store.list_batches(
            tenant_id=tenant_id, owner=owner, status=status, before_pk=None, limit=10
        )
        return [b.id for b in rows]

    assert await ids(None, None) == [bobs.id, mine_done.id, mine_open.id]
    assert await ids("alice", None) == [mine_done.id, mine_open.id]
    assert await ids("alice", "open") == [mine_open.id]
    assert await ids(None, "completed") == [mine_done.id]
    assert await ids("carol", None) == []
    assert await store.get_batch(bobs.id, tenant_id="ten_other") is None


async def test_batch_keeps_its_settings(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(
        items=1, close=False, runner="cheap", priority=70, parallelism=4, fail_fast=True,
        max_error_pct=12.5, budget_usd=3.0, item_timeout_s=9.0, max_attempts=5,
        expires_at=NOW + 999, metadata={"team": "data", "n": [1, 2]},
    )

    assert (batch.task, batch.version, batch.runner, batch.owner) == (
        "echo", "1.0.0", "cheap", "alice"
    )
    assert (batch.priority, batch.parallelism, batch.fail_fast, batch.max_error_pct) == (
        70, 4, True, 12.5
    )
    assert (batch.budget_usd, batch.item_timeout_s, batch.max_attempts, batch.expires_at) == (
        3.0, 9.0, 5, NOW + 999
    )
    assert batch.metadata == {"team": "data", "n": [1, 2]}
    assert (batch.error, batch.stop_reason, batch.created_at) == (None, None, NOW)
    [c] = await claim(store)
    assert (c.task, c.version, c.runner, c.item_timeout_s, c.max_attempts) == (
        "echo", "1.0.0", "cheap", 9.0, 5
    )


async def test_list_and_get_items(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=5)
    other = await make_batch(items=1)
    claimed = await claim(store, limit=3)
    mine = [c for c in claimed if c.batch_id == batch.id]
    await store.finish_items([ok(mine[0])], now=NOW + 1)

    page1 = await store.list_items(batch.id, status=None, after_seq=-1, limit=2)
    page2 = await store.list_items(batch.id, status=None, after_seq=page1[-1].seq, limit=10)
    assert [i.seq for i in page1 + page2] == [0, 1, 2, 3, 4]
    assert all(i.batch_id == batch.id for i in page1 + page2)
    succeeded = await store.list_items(batch.id, status="succeeded", after_seq=-1, limit=10)
    assert [i.rowid for i in succeeded] == [mine[0].rowid]

    item = await store.get_item(batch.id, mine[0].rowid)
    assert item is not None
    assert (item.id, item.seq, item.status, item.attempts) == (
        f"itm_{mine[0].rowid}", mine[0].seq, "succeeded", 1
    )
    assert orjson.loads(item.input) == {"n": mine[0].seq}
    # When its lease was granted: the claim's time, or (PostgreSQL, a transaction per
    # share) that plus the moments before the share's transaction began.
    assert item.started_at == pytest.approx(NOW, abs=1.0)
    other_items = await store.list_items(other.id, status=None, after_seq=-1, limit=10)
    assert await store.get_item(batch.id, other_items[0].rowid) is None
    assert await store.get_item(batch.id, 10**9) is None


async def test_export_rows_yields_finished_items_in_order(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=4, records_per_item=2)
    by_seq = {c.seq: c for c in await claim(store)}
    await store.finish_items([ok(by_seq[2]), failed(by_seq[0]), ok(by_seq[3])], now=NOW + 1)

    rows = await store.export_rows(batch.id, after_seq=-1, limit=10)
    assert [(r.seq, r.status) for r in rows] == [(0, "failed"), (2, "succeeded"), (3, "succeeded")]
    assert [(r.rec0, r.n_records) for r in rows] == [(0, 2), (4, 2), (6, 2)]
    assert orjson.loads(rows[0].input) == [{"n": 0, "r": 0}, {"n": 0, "r": 1}]
    assert rows[0].output is None
    assert rows[0].error == {"code": "handler_error", "message": "boom"}
    assert orjson.loads(rows[1].output or b"") == {"done": 2}
    assert rows[1].rowid == by_seq[2].rowid

    after = await store.export_rows(batch.id, after_seq=0, limit=1)
    assert [r.seq for r in after] == [2]



async def test_results_page_of_a_run_says_only_where_it_starts(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=5)
    by_seq = {c.seq: c for c in await claim(store)}
    await store.finish_items([ok(c) for c in by_seq.values()], now=NOW + 1)

    page = await store.results_page(batch.id, after_seq=0, upto_seq=3)
    assert page is not None and page.run is not None and page.items is None
    assert (page.run.count, page.run.first_id, page.run.first_seq) == (3, by_seq[1].rowid, 1)
    assert page.run.bare_outputs
    assert page.inputs.split(b"\n") == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert page.outputs.split(b"\n") == [b'{"done":1}', b'{"done":2}', b'{"done":3}']
    assert page.usages is None and page.errors is None
    assert await store.results_page(batch.id, after_seq=4, upto_seq=9) is None


async def test_results_page_of_no_run_lists_its_items(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=4)
    by_seq = {c.seq: c for c in await claim(store, limit=3)}
    await store.finish_items([ok(by_seq[0]), failed(by_seq[1]), ok(by_seq[2], tokens_in=2)],
                             now=NOW + 1)

    # A failed item, and an unfinished one: item by item, the finished ones only.
    page = await store.results_page(batch.id, after_seq=-1, upto_seq=3)
    assert page is not None and page.run is None and page.items is not None
    assert page.items.decode() == (f"{by_seq[0].rowid},0,succeeded,{by_seq[1].rowid},1,failed,"
                                   f"{by_seq[2].rowid},2,succeeded")
    # Every item finished and succeeded, one of them with usage: a run.
    run = await store.results_page(batch.id, after_seq=1, upto_seq=2)
    assert run is not None and run.run is not None and run.run.count == 1
    assert run.usages is not None and orjson.loads(run.usages)["tokens_in"] == 2


async def test_results_page_of_a_batch_fed_around_another_is_no_run(
    store: Store, make_batch: MakeBatch
) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    ids = [new_id("bat") for _ in range(2)]
    for batch_id in ids:
        await store.create_batch(batch_id=batch_id, tenant_id=t.id, owner="alice",
                                 spec=BatchSpec(task="echo", version="1.0.0"), now=NOW)
    stages = {b: stage_token(NOW) for b in ids}
    for n in range(3):  # their ids interleave
        for batch_id in ids:
            await store.stage_items(batch_id, stages[batch_id],
                                    [StagedItem(1, orjson.dumps({"n": n}), 0.0)])
    for batch_id in ids:
        await store.commit_stage(batch_id, stages[batch_id], close=True, now=NOW)
    claimed = await claim(store)
    await store.finish_items([ok(c) for c in claimed], now=NOW + 1)

    page = await store.results_page(ids[0], after_seq=-1, upto_seq=2)
    assert page is not None and page.run is None and page.items is not None
    assert len(page.items.split(b",")) == 9


# usage

async def test_usage_metered_per_period(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=3, records_per_item=2)
    a, b, c = await claim(store)
    await store.finish_items(
        [ok(a, cost_usd=0.5, tokens_in=3, tokens_out=4), failed(b)], now=NOW + 1
    )
    next_month = datetime(2023, 12, 2, tzinfo=UTC).timestamp()
    await make_batch(items=1, records_per_item=2, now=next_month)

    usage = await store.usage(batch.tenant_id, PERIOD)
    assert usage["items_submitted"] == 3
    assert usage["records_submitted"] == 6
    assert usage["items_processed"] == 2
    assert usage["records_processed"] == 4
    assert usage["cost_usd"] == pytest.approx(0.5)
    assert usage["tokens"] == 7
    december = await store.usage(batch.tenant_id, "2023-12")
    assert (december["items_submitted"], december["records_submitted"]) == (1, 2)
    other = await store.ensure_tenant("globex", tier="free", now=NOW)
    assert await store.usage(other.id, PERIOD) == {}


async def test_events_record_lifecycle(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=1)
    [a] = await claim(store)
    await store.finish_items([ok(a)], now=NOW + 1)

    events = await store.events(batch.id, after_id=0, limit=100)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "batch.created"
    assert kinds[-1] == "batch.finished"
    assert events[-1]["data"] == {"status": "completed"}
    assert [e["id"] for e in await store.events(batch.id, after_id=events[0]["id"], limit=100)] == [
        e["id"] for e in events[1:]
    ]


async def test_ping_answers_while_open_and_fails_once_closed(store: Store) -> None:
    # /healthz is this round trip: it must answer on a live store and fail, with the
    # store's own error (a 503, not a crash), when there is no database behind it.
    assert await store.ping() is None
    await store.close()
    with pytest.raises(errors.StoreError):
        await store.ping()


# tiers, quotas and metering

DECEMBER = datetime(2023, 12, 2, tzinfo=UTC).timestamp()


def calls(tenant_id: str, limit: float, **extra: Quota) -> Metering:
    """One API call, within ``limit`` calls a period."""
    return Metering(
        tenant_id=tenant_id, add={"api_calls": 1},
        quotas=(Quota("api_calls", "api_calls", limit), *extra.values()),
    )


async def test_key_keeps_its_limit_overrides(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    await store.create_key(
        key_id="key_a", tenant_id=t.id, key_hash="hash-a", prefix="bd_a", role="user",
        tier="pro", owner="alice", now=NOW, limits={"api_calls": 10, "cost_usd": 2.5},
    )
    await store.create_key(
        key_id="key_b", tenant_id=t.id, key_hash="hash-b", prefix="bd_b", role="user",
        tier="free", owner="bob", now=NOW,
    )

    found = await store.key_by_hash("hash-a")
    assert found is not None and found[0].limits == {"api_calls": 10, "cost_usd": 2.5}
    plain = await store.key_by_hash("hash-b")
    assert plain is not None and plain[0].limits is None
    assert {k.id: k.limits for k in await store.list_keys(t.id)} == {
        "key_a": {"api_calls": 10, "cost_usd": 2.5}, "key_b": None,
    }


async def test_meter_counts_until_the_quota_then_refuses_adding_nothing(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)

    await store.meter(calls(t.id, 2), now=NOW)
    await store.meter(calls(t.id, 2), now=NOW + 1)
    with pytest.raises(errors.QuotaExceeded) as refused:
        await store.meter(calls(t.id, 2), now=NOW + 2)

    assert refused.value.quota == "api_calls"
    assert (await store.usage(t.id, PERIOD))["api_calls"] == 2
    await store.meter(calls(t.id, -1), now=NOW + 3)  # unlimited
    await store.meter(calls(t.id, 2), now=DECEMBER)  # a new period starts from zero
    assert await store.usage_since(t.id, PERIOD) == {
        PERIOD: {"api_calls": 3}, "2023-12": {"api_calls": 1},
    }
    assert await store.usage_since(t.id, "2023-12") == {"2023-12": {"api_calls": 1}}
    other = await store.ensure_tenant("globex", tier="free", now=NOW)
    assert await store.usage_since(other.id, PERIOD) == {}


async def test_meter_checks_cost_with_the_pending_estimate(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=1)
    [a] = await claim(store)
    await store.finish_items([ok(a, cost_usd=0.5)], now=NOW + 1)

    fits = Quota("cost_usd", "cost_usd", 1.0, pending=0.5)
    await store.meter(calls(batch.tenant_id, 10, cost=fits), now=NOW + 2)
    too_much = Quota("cost_usd", "cost_usd", 1.0, pending=0.6)
    with pytest.raises(errors.QuotaExceeded) as refused:
        await store.meter(calls(batch.tenant_id, 10, cost=too_much), now=NOW + 2)
    assert refused.value.quota == "cost_usd"
    assert (await store.usage(batch.tenant_id, PERIOD))["api_calls"] == 1


async def test_commit_stage_meters_and_checks_quotas_with_the_items(
    store: Store, make_batch: MakeBatch
) -> None:
    first = await make_batch(items=3)
    tenant_id = first.tenant_id
    items = Quota("items", "items_submitted", 5)

    async def submit(n: int) -> str:
        batch_id = new_id("bat")
        await store.create_batch(
            batch_id=batch_id, tenant_id=tenant_id, owner="alice",
            spec=BatchSpec(task="echo", version="1.0.0"), now=NOW,
        )
        stage = stage_token(NOW)
        await store.stage_items(batch_id, stage, [StagedItem(1, b'{"n": 1}', 0.1)] * n)
        try:
            await store.commit_stage(
                batch_id, stage, close=True, now=NOW, metering=calls(tenant_id, 10, items=items)
            )
        except errors.QuotaExceeded:
            await store.discard_stage(batch_id, stage, drop_batch=True)
            raise
        return batch_id

    with pytest.raises(errors.QuotaExceeded) as refused:
        await submit(3)  # 6 items of 5
    assert refused.value.quota == "items"
    usage = await store.usage(tenant_id, PERIOD)
    assert usage["items_submitted"] == 3 and "api_calls" not in usage
    listed, total = await store.query_batches(
        BatchQuery(tenant_id=tenant_id), offset=0, limit=10
    )
    assert ([b.id for b in listed], total) == ([first.id], 1)

    second = await submit(2)
    assert (await fetch(store, second)).n_total == 2
    usage = await store.usage(tenant_id, PERIOD)
    assert (usage["items_submitted"], usage["api_calls"]) == (5, 1)


async def test_stop_batch_meters_in_its_transaction(store: Store, make_batch: MakeBatch) -> None:
    batch = await make_batch(items=2)
    other = await make_batch(items=2)
    metering = calls(batch.tenant_id, 2)

    assert await store.stop_batch(
        batch.id, reason="cancelled", detail=None, now=NOW + 1, metering=metering
    )
    # A batch that no longer stops still counts the request.
    assert not await store.stop_batch(
        batch.id, reason="cancelled", detail=None, now=NOW + 1, metering=metering
    )
    assert (await store.usage(batch.tenant_id, PERIOD))["api_calls"] == 2
    with pytest.raises(errors.QuotaExceeded):
        await store.stop_batch(
            other.id, reason="cancelled", detail=None, now=NOW + 1, metering=metering
        )

    assert (await fetch(store, other.id)).status == "closed"  # nothing stopped
    assert (await store.usage(batch.tenant_id, PERIOD))["api_calls"] == 2


# pages and summaries of batches

async def test_query_batches_pages_filters_and_counts(
    store: Store, make_batch: MakeBatch
) -> None:
    a = await make_batch(items=1)
    b = await make_batch(items=2, priority=90)
    c = await make_batch(items=3, owner="bob")
    await make_batch("globex", items=1)
    [started] = await claim(store, limit=1)
    assert started.batch_id == b.id
    await store.stop_batch(c.id, reason="cancelled", detail=None, now=NOW + 1)

    async def ids(offset: int = 0, limit: int = 10, **filters: Any) -> tuple[list[str], int]:
        rows, total = await store.query_batches(
            BatchQuery(tenant_id=a.tenant_id, **filters), offset=offset, limit=limit
        )
        return [r.id for r in rows], total

    assert await ids(limit=2) == ([c.id, b.id], 3)
    assert await ids(offset=2, limit=2) == ([a.id], 3)
    assert await ids(owner="alice") == ([b.id, a.id], 2)
    assert await ids(statuses=("open", "closed"), started=True) == ([b.id], 1)
    assert await ids(statuses=("open", "closed"), started=False) == ([a.id], 1)
    assert await ids(statuses=("cancelled",)) == ([c.id], 1)
    assert await ids(statuses=()) == ([], 0)
    assert await ids(task="echo") == ([c.id, b.id, a.id], 3)
    assert await ids(task="other") == ([], 0)


async def test_batch_totals_sum_by_status_and_start(store: Store, make_batch: MakeBatch) -> None:
    a = await make_batch(items=1)
    b = await make_batch(items=2, priority=90)
    c = await make_batch(items=3, owner="bob")
    await make_batch("globex", items=4)
    [started] = await claim(store, limit=1)
    await store.finish_items([ok(started, cost_usd=0.25, tokens_in=3, tokens_out=4)], now=NOW + 1)
    await store.stop_batch(c.id, reason="cancelled", detail=None, now=NOW + 1)

    def table(totals: list[Any]) -> dict[tuple[str, bool], tuple[int, int, float, int]]:
        return {(t.status, t.started): (t.batches, t.items, t.cost_usd, t.tokens) for t in totals}

    assert table(await store.batch_totals(BatchQuery(tenant_id=a.tenant_id))) == {
        ("closed", False): (1, 1, 0.0, 0),
        ("closed", True): (1, 2, 0.25, 7),
        ("cancelled", False): (1, 3, 0.0, 0),
    }
    assert table(await store.batch_totals(BatchQuery(tenant_id=a.tenant_id, owner="bob"))) == {
        ("cancelled", False): (1, 3, 0.0, 0),
    }
    assert b.id == started.batch_id


# pull-style delivery: buffers, take_results, idle timeout

async def make_chunked(
    store: Store, chunks: list[list[dict[str, Any]]], *, tenant: str = "acme",
    now: float = NOW, **settings: Any,
) -> Batch:
    """An open ``deliver`` batch of whole chunks, as the Spark dialect makes them."""
    t = await store.ensure_tenant(tenant, tier="free", now=now)
    batch_id = new_id("bat")
    await store.create_batch(
        batch_id=batch_id, tenant_id=t.id, owner="alice",
        spec=BatchSpec(task="echo", version="1.0.0", records_per_item=0, close=False,
                       deliver=True, **settings),
        now=now,
    )
    stage = stage_token(now)
    staged = [
        StagedItem(len(c), orjson.dumps(c), 0.0, ext_id=f"chunk-{i}",
                   meta=orjson.dumps({"i": i}))
        for i, c in enumerate(chunks)
    ]
    if staged:
        await store.stage_items(batch_id, stage, staged)
    await store.commit_stage(batch_id, stage, close=False, now=now)
    return await fetch(store, batch_id)


def records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"n": start + i} for i in range(n)]


async def test_take_results_hands_out_finished_chunks_once(store: Store) -> None:
    batch = await make_chunked(store, [records(2), records(3, 2), records(1, 5)])
    a, b, c = await claim(store)
    out_a = orjson.dumps([{"n": 0}, None])
    done_a = Outcome(
        rowid=a.rowid, fence=a.fence, status="succeeded", output=out_a,
        error={"code": "record_errors", "records": [None, {"code": "x", "message": "bad"}]},
        records_succeeded=1, records_failed=1, finished_at=NOW + 1, compute_ms=4.0,
    )
    await store.finish_items([done_a, failed(b, compute_ms=2.0)], now=NOW + 1)

    waiting = await fetch(store, batch.id)
    assert (waiting.n_undelivered, waiting.r_undelivered) == (2, 5)
    assert waiting.out_buffer_bytes == len(out_a)
    assert waiting.compute_ms == pytest.approx(6.0)
    assert waiting.in_buffer_bytes == len(orjson.dumps(records(1, 5)))  # c still runs

    [first] = await store.take_results(batch.id, limit=1, now=NOW + 2)
    assert (first.rowid, first.ext_id, first.status, first.n_records) == (
        a.rowid, "chunk-0", "succeeded", 2)
    assert orjson.loads(first.input) == records(2)
    assert first.output is not None and orjson.loads(first.output) == [{"n": 0}, None]
    assert first.error is not None and first.error["records"][1]["code"] == "x"
    assert first.meta is not None and orjson.loads(first.meta) == {"i": 0}
    assert first.compute_ms == pytest.approx(4.0)
    after = await fetch(store, batch.id)
    assert (after.n_undelivered, after.r_undelivered, after.out_buffer_bytes) == (1, 3, 0)
    assert after.last_activity_at == NOW + 2

    [second] = await store.take_results(batch.id, limit=10, now=NOW + 3)
    assert (second.ext_id, second.status, second.output) == ("chunk-1", "failed", None)
    assert second.error == {"code": "handler_error", "message": "boom"}
    assert await store.take_results(batch.id, limit=10, now=NOW + 4) == []  # c is not done

    await store.finish_items([ok(c)], now=NOW + 5)
    [third] = await store.take_results(batch.id, limit=10, now=NOW + 6)
    assert third.ext_id == "chunk-2"
    drained = await fetch(store, batch.id)
    assert (drained.n_undelivered, drained.r_undelivered, drained.out_buffer_bytes,
            drained.in_buffer_bytes) == (0, 0, 0, 0)


async def test_cancel_releases_the_output_buffer(store: Store) -> None:
    batch = await make_chunked(store, [records(2), records(2, 2)], parallelism=1)
    [a] = await claim(store)
    await store.finish_items([ok(a)], now=NOW + 1)
    assert (await fetch(store, batch.id)).n_undelivered == 1

    await store.stop_batch(batch.id, reason="cancelled", detail=None, now=NOW + 2)
    cancelled = await fetch(store, batch.id)
    assert (cancelled.n_undelivered, cancelled.r_undelivered, cancelled.out_buffer_bytes,
            cancelled.in_buffer_bytes) == (0, 0, 0, 0)
    assert await store.tenant_buffers(cancelled.tenant_id) == (0, 0)


async def test_input_buffer_full_rejects_the_whole_upload(store: Store) -> None:
    chunk = records(3)
    size = len(orjson.dumps(chunk))
    batch = await make_chunked(store, [chunk], max_input_bytes=2 * size + 1)
    assert batch.in_buffer_bytes == size

    stage = stage_token(NOW)
    await store.stage_items(batch.id, stage, [
        StagedItem(3, orjson.dumps(chunk), 0.0, ext_id="x1"),
        StagedItem(3, orjson.dumps(chunk), 0.0, ext_id="x2"),
    ])
    with pytest.raises(quotas.InputBufferFull):
        await store.commit_stage(batch.id, stage, close=False, now=NOW + 1)
    full = await fetch(store, batch.id)
    assert (full.n_total, full.r_total, full.in_buffer_bytes) == (1, 3, size)
    assert len(await store.list_items(batch.id, status=None, after_seq=-1, limit=10)) == 1

    # one chunk fits; once it ran, its bytes leave the buffer
    stage = stage_token(NOW)
    await store.stage_items(batch.id, stage, [StagedItem(3, orjson.dumps(chunk), 0.0)])
    await store.commit_stage(batch.id, stage, close=False, now=NOW + 2)
    assert (await fetch(store, batch.id)).in_buffer_bytes == 2 * size
    assert await store.tenant_buffers(batch.tenant_id) == (2 * size, 0)
    for item in await claim(store):
        await store.finish_items([ok(item)], now=NOW + 3)
    assert (await fetch(store, batch.id)).in_buffer_bytes == 0


async def test_tenant_input_limit_spans_the_tenants_batches(store: Store) -> None:
    chunk = records(3)
    size = len(orjson.dumps(chunk))
    first = await make_chunked(store, [chunk])
    other = await make_chunked(store, [])
    elsewhere = await make_chunked(store, [], tenant="globex")

    for batch_id, expect_full in ((other.id, True), (elsewhere.id, False)):
        stage = stage_token(NOW)
        await store.stage_items(batch_id, stage, [StagedItem(3, orjson.dumps(chunk), 0.0)])
        commit = store.commit_stage(batch_id, stage, close=False, now=NOW + 1,
                                    tenant_input_limit=2 * size - 1)
        if expect_full:
            with pytest.raises(quotas.InputBufferFull):
                await commit
        else:
            await commit
    assert (await fetch(store, other.id)).n_total == 0
    assert (await fetch(store, elsewhere.id)).n_total == 1
    assert await store.tenant_buffers(first.tenant_id) == (size, 0)


async def test_full_output_buffer_pauses_dispatch_until_taken(store: Store) -> None:
    batch = await make_chunked(store, [records(1), records(1, 1), records(1, 2)],
                               max_output_bytes=10)
    [a] = await claim(store, limit=1)
    output = orjson.dumps([{"n": "0123456789"}])
    await store.finish_items([ok(a, output=output)], now=NOW + 1)
    paused = await fetch(store, batch.id)
    assert (paused.out_buffer_bytes, paused.n_queued) == (len(output), 2)
    assert await claim(store) == []

    assert len(await store.take_results(batch.id, limit=10, now=NOW + 2)) == 1
    resumed = await claim(store)
    assert len(resumed) == 2  # room again: both remaining chunks may run


async def test_idle_timeout_closes_an_open_batch(store: Store) -> None:
    batch = await make_chunked(store, [records(2)], idle_timeout_s=60)
    [a] = await claim(store)
    await store.finish_items([ok(a)], now=NOW + 1)
    quiet = await make_chunked(store, [], idle_timeout_s=60)
    no_timeout = await make_chunked(store, [])

    await store.reap(now=NOW + 59, retry_backoff_max_s=60, staging_ttl_s=3600)
    assert (await fetch(store, batch.id)).status == "open"
    await store.take_results(batch.id, limit=1, now=NOW + 50)  # a pull is activity
    await store.reap(now=NOW + 61, retry_backoff_max_s=60, staging_ttl_s=3600)
    assert (await fetch(store, batch.id)).status == "open"
    closed_quiet = await fetch(store, quiet.id)
    assert (closed_quiet.status, closed_quiet.close_reason) == ("completed", "timeout")

    await store.reap(now=NOW + 111, retry_backoff_max_s=60, staging_ttl_s=3600)
    timed_out = await fetch(store, batch.id)
    assert (timed_out.status, timed_out.close_reason) == ("completed", "timeout")
    assert timed_out.closed_at == NOW + 111
    assert (await fetch(store, no_timeout.id)).status == "open"
