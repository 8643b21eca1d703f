"""Store contract for commit admission, over every backend.

An upload commits whole or not at all: a replayed create returns the batch of the first
request, and an upload the batch refuses (closed, stopped, over a buffer) leaves no item,
usage or event behind.
"""

from __future__ import annotations

import orjson
import pytest

from batchd.core import quotas
from batchd.core.db import Database
from batchd.core.quotas import Metering, Quota
from batchd.domain import errors
from batchd.domain.models import Batch, BatchSpec
from batchd.domain.records import StagedItem
from batchd.store import script as q
from batchd.store.base import Store
from batchd.store.script import Script
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import NOW, PERIOD, MakeBatch, fetch, stage_token

store = contract.store  # the contract suite's fixture: every backend
make_batch = contract.make_batch

pytestmark = pytest.mark.timeout(scaled(30))
SPEC = BatchSpec(task="echo", version="1.0.0")


def _staged_count(batch_pk: int, stage: str) -> Script[int]:
    row = yield q.one("upload_totals_of_stage", batch_pk, stage)
    return int(row[0])


async def staged_left(store: Store, batch: Batch, stage: str) -> int:
    """Items of the upload ``stage`` still waiting in the batch (invisible to every read)."""
    assert isinstance(store, Database)
    return await store.store.run_read(_staged_count, batch.pk, stage)


async def stage(store: Store, batch_id: str, n: int, *, size: int = 8) -> str:
    token = stage_token(NOW)
    body = orjson.dumps({"p": "x" * max(0, size - 10)})
    await store.stage_items(batch_id, token, [StagedItem(1, body, 0.25)] * n)
    return token


async def submitted(store: Store, tenant_id: str) -> float:
    return (await store.usage(tenant_id, PERIOD)).get("items_submitted", 0.0)


async def kinds(store: Store, batch_id: str) -> list[str]:
    return [e["kind"] for e in await store.events(batch_id, after_id=0, limit=100)]


async def test_replayed_create_returns_the_first_batch_and_keeps_nothing_of_it(
    store: Store,
) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    for batch_id in ("bat_first", "bat_retry"):
        await store.create_batch(batch_id=batch_id, tenant_id=t.id, owner="alice", spec=SPEC,
                                 now=NOW)
    first = await stage(store, "bat_first", 1)
    retry = await stage(store, "bat_retry", 3)
    assert await store.commit_stage("bat_first", first, close=True, now=NOW,
                                    idempotency_key="idem", request_hash="h1") == "bat_first"
    # The first batch has since been stopped: a replay still names it.
    assert await store.stop_batch("bat_first", reason="cancelled", detail=None, now=NOW)

    holder = await store.commit_stage("bat_retry", retry, close=True, now=NOW + 1,
                                      idempotency_key="idem", request_hash="h2")

    assert holder == "bat_first"
    assert await store.get_batch("bat_retry", tenant_id=None) is None
    with pytest.raises(errors.NotFound):
        await store.commit_stage("bat_retry", retry, close=True, now=NOW + 2)
    listed = await store.list_batches(tenant_id=t.id, owner=None, status=None, before_pk=None,
                                      limit=10)
    assert [b.id for b in listed] == ["bat_first"]
    assert (await fetch(store, "bat_first")).request_hash == "h1"
    assert await submitted(store, t.id) == 1
    assert await kinds(store, "bat_retry") == []


@pytest.mark.parametrize("ended", ["closed", "stopped"])
async def test_ended_batch_refuses_an_append_and_keeps_nothing_of_it(
    store: Store, make_batch: MakeBatch, ended: str
) -> None:
    batch = await make_batch(items=2, close=ended == "closed")
    if ended == "stopped":
        assert await store.stop_batch(batch.id, reason="cancelled", detail=None, now=NOW)
    before = await fetch(store, batch.id)
    events = await kinds(store, batch.id)
    late = await stage(store, batch.id, 3)
    assert await staged_left(store, batch, late) == 3

    with pytest.raises(errors.Conflict) as refused:
        await store.commit_stage(batch.id, late, close=False, now=NOW + 1)

    assert "accepts no more items" in refused.value.message
    assert await staged_left(store, batch, late) == 0
    after = await fetch(store, batch.id)
    assert (after.status, after.n_total, after.r_total, after.in_bytes, after.est_usd) == (
        before.status, before.n_total, before.r_total, before.in_bytes, before.est_usd)
    assert len(await store.list_items(batch.id, status=None, after_seq=-1, limit=10)) == 2
    assert await submitted(store, batch.tenant_id) == 2
    assert await kinds(store, batch.id) == events


async def test_append_over_the_batch_input_buffer_is_refused_and_discarded(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=1, close=False, max_input_bytes=40)
    too_big = await stage(store, batch.id, 2, size=20)

    with pytest.raises(quotas.InputBufferFull):
        await store.commit_stage(batch.id, too_big, close=False, now=NOW + 1)

    assert await staged_left(store, batch, too_big) == 0
    after = await fetch(store, batch.id)
    assert (after.status, after.n_total, after.in_buffer_bytes) == (
        "open", 1, batch.in_buffer_bytes)
    assert await submitted(store, batch.tenant_id) == 1
    fits = await stage(store, batch.id, 1, size=20)  # the batch still takes what fits
    await store.commit_stage(batch.id, fits, close=False, now=NOW + 2)
    assert (await fetch(store, batch.id)).n_total == 2


async def test_create_over_its_input_buffer_is_refused_and_dropped(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    spec = BatchSpec(task="echo", version="1.0.0", max_input_bytes=30)
    await store.create_batch(batch_id="bat_big", tenant_id=t.id, owner="alice", spec=spec,
                             now=NOW)
    token = await stage(store, "bat_big", 2, size=20)

    with pytest.raises(quotas.InputBufferFull):
        await store.commit_stage("bat_big", token, close=True, now=NOW)

    assert await store.get_batch("bat_big", tenant_id=None) is None
    with pytest.raises(errors.NotFound):
        await store.stage_items("bat_big", token, [StagedItem(1, b"{}", 0.0)])
    assert await submitted(store, t.id) == 0
    assert await kinds(store, "bat_big") == []


async def test_quota_refusal_commits_nothing_and_leaves_the_upload_to_discard(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=1, close=False)
    token = await stage(store, batch.id, 2)
    over = Metering(tenant_id=batch.tenant_id, add={"api_calls": 1},
                    quotas=(Quota("items", "items_submitted", 2),))

    with pytest.raises(errors.QuotaExceeded):
        await store.commit_stage(batch.id, token, close=True, now=NOW + 1, metering=over)

    after = await fetch(store, batch.id)
    assert (after.status, after.n_total) == ("open", 1)
    assert await store.usage(batch.tenant_id, PERIOD) == {"items_submitted": 1,
                                                         "records_submitted": 1}
    assert await staged_left(store, batch, token) == 2
    await store.discard_stage(batch.id, token, drop_batch=True)  # a live batch stays
    assert await staged_left(store, batch, token) == 0
    assert (await fetch(store, batch.id)).n_total == 1



async def test_uploads_staged_side_by_side_cannot_both_pass_the_tier_batch_size(
    store: Store, make_batch: MakeBatch
) -> None:
    """Each of two concurrent appends fits alone; the commit, which sees what the other
    committed, refuses the second and keeps nothing of it."""
    free = quotas.tier_table()["free"]  # 5 items a batch
    batch = await make_batch(items=2, close=False)
    first, second = await stage(store, batch.id, 2), await stage(store, batch.id, 2)

    assert await store.commit_stage(batch.id, first, close=False, now=NOW, limits=free,
                                    tier="free") == batch.id
    with pytest.raises(errors.BatchTooLarge):
        await store.commit_stage(batch.id, second, close=False, now=NOW, limits=free,
                                 tier="free")

    after = await fetch(store, batch.id)
    assert after.n_total == 4
    assert await staged_left(store, after, second) == 0
