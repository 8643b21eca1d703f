"""Store contract for packed intake, over every backend.

Items staged as one JSON array per group (core.staging.PackedItems) must be stored
exactly as one StagedItem per record stores them: the same input bytes, sizes, seqs,
record numbers, estimates and counters, for a batch being created and for an upload to
a live batch.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchd.core import staging
from batchd.domain import codec
from batchd.domain.models import Batch, BatchSpec
from batchd.domain.records import StagedItem
from batchd.store.base import Store
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import LEASE_S, NOW, fetch, ok, stage_token
from tests.unit.test_bulk_intake import TRICKY

store = contract.store  # the contract suite's fixture: every backend

pytestmark = pytest.mark.timeout(scaled(60))
SPEC = BatchSpec(task="echo", version="1.0.0", parallelism=10_000)
EST = 0.125


def records(n: int, salt: int) -> list[Any]:
    return [TRICKY[i % len(TRICKY)] if i % 4 else {"i": i, "salt": salt, "t": "\u00e9" * (i % 5)}
            for i in range(n)]


def packed(recs: list[Any]) -> staging.PackedItems:
    return staging.PackedItems(
        count=len(recs), inputs=orjson.dumps(recs), size=sum(len(codec.dumps(r)) for r in recs),
        est_usd=EST, est_total=EST * len(recs),
    )


def one_by_one(recs: list[Any]) -> list[StagedItem]:
    return [StagedItem(1, codec.dumps(r), EST) for r in recs]


async def upload(store: Store, batch_id: str, groups: list[Any]) -> None:
    token = stage_token(NOW)
    for group in groups:
        await store.stage_items(batch_id, token, group)
    assert await store.commit_stage(batch_id, token, close=False, now=NOW) == batch_id


async def run_all(store: Store) -> dict[str, dict[int, float]]:
    """Claim and finish every item; each batch's estimates by seq. Item ids must rise with
    seq within a batch."""
    est: dict[str, dict[int, float]] = {}
    while claimed := await contract.claim(store, limit=1000):
        for c in claimed:
            est.setdefault(c.batch_id, {})[c.seq] = c.est_usd
        await store.finish_items([ok(c) for c in claimed], now=NOW + 1)
    return est


async def stored(store: Store, batch: Batch, est: dict[int, float]) -> list[tuple[Any, ...]]:
    """(seq, rec0, n_records, input, est_usd) of every item of ``batch``, in seq order."""
    rows = await store.export_rows(batch.id, after_seq=-1, limit=10_000)
    assert [r.rowid for r in rows] == sorted(r.rowid for r in rows)
    return [(r.seq, r.rec0, r.n_records, r.input, est[r.seq]) for r in rows]


async def test_packed_items_are_stored_as_one_item_per_record_would_be(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    first, second = records(1300, 1), records(700, 2)
    for batch_id in ("bat_packed", "bat_rows"):
        await store.create_batch(batch_id=batch_id, tenant_id=t.id, owner="alice", spec=SPEC,
                                 now=NOW)

    # A batch being created, then an upload to it once live; groups of uneven sizes.
    await upload(store, "bat_packed", [packed(first[:500]), packed(first[500:])])
    await upload(store, "bat_packed", [packed(second[:1]), packed(second[1:])])
    await upload(store, "bat_rows", [one_by_one(first[:500]), one_by_one(first[500:])])
    await upload(store, "bat_rows", [one_by_one(second)])

    a, b = await fetch(store, "bat_packed"), await fetch(store, "bat_rows")
    assert (a.n_total, a.r_total, a.in_bytes) == (b.n_total, b.r_total, b.in_bytes) == (
        2000, 2000, sum(len(codec.dumps(r)) for r in first + second))
    assert a.est_usd == b.est_usd
    est = await run_all(store)
    got = await stored(store, a, est["bat_packed"])
    assert got == await stored(store, b, est["bat_rows"])
    assert [(seq, rec0, inp) for seq, rec0, _, inp, _ in got] == [
        (i, i, codec.dumps(r)) for i, r in enumerate(first + second)]
    assert {(n, est) for _, _, n, _, est in got} == {(1, EST)}


async def test_packed_upload_to_a_live_batch_stays_invisible_until_committed(
    store: Store,
) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    await store.create_batch(batch_id="bat_live", tenant_id=t.id, owner="alice", spec=SPEC,
                             now=NOW)
    await upload(store, "bat_live", [packed(records(3, 0))])
    token = stage_token(NOW)

    await store.stage_items("bat_live", token, packed(records(50, 1)))

    assert (await fetch(store, "bat_live")).n_total == 3
    assert len(await store.claim_items(owner="w", limit=100, now=NOW, lease_s=LEASE_S,
                                       tenant_cap=0)) == 3
    await store.discard_stage("bat_live", token, drop_batch=False)
    assert (await fetch(store, "bat_live")).n_total == 3
