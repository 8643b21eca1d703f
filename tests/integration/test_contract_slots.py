"""Contract tests, on every backend, for a batch's parallelism: a slot is free when its
handler returns (the claimer's finished, uncommitted items), not when its outcome is
committed, and the cap still holds exactly; a batch created with no cap has none."""

from __future__ import annotations

import pytest

from batchd.domain.models import UNCAPPED, FreedSlots
from batchd.store.base import Store
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import LEASE_S, NOW, MakeBatch, claim, fetch, ok

store = contract.store
make_batch = contract.make_batch

pytestmark = pytest.mark.timeout(scaled(30))


def freed(batch_id: str, tenant_id: str, ids: list[int]) -> FreedSlots:
    return FreedSlots({batch_id: ids}, {tenant_id: len(ids)})


async def claim_freed(store: Store, slots: FreedSlots, *, owner: str = "w1",
                      limit: int = 100) -> list[int]:
    got = await store.claim_items(owner=owner, limit=limit, now=NOW + 2, lease_s=LEASE_S,
                                  tenant_cap=0, freed=slots)
    return [c.rowid for c in got]


async def test_a_finished_uncommitted_item_frees_its_slot_for_its_claimer(
    store: Store, make_batch: MakeBatch
) -> None:
    b = await make_batch(items=6, parallelism=2)
    first = await claim(store)
    assert len(first) == 2
    assert await claim(store) == []  # full: both still running
    # Handler of the first item returned; its outcome waits for the group commit.
    again = await claim_freed(store, freed(b.id, b.tenant_id, [first[0].rowid]))
    assert len(again) == 1
    assert (await fetch(store, b.id)).n_running == 3  # counted until the commit
    # The same freed item cannot free a second slot.
    assert await claim_freed(store, freed(b.id, b.tenant_id, [first[0].rowid])) == []


async def test_a_budgeted_batch_frees_a_slot_only_when_its_outcome_is_committed(
    store: Store, make_batch: MakeBatch
) -> None:
    # The next item is admitted on what the last one cost, known once it is committed.
    b = await make_batch(items=6, parallelism=2, est_usd=0.01, budget_usd=1.0)
    first = await claim(store)
    assert len(first) == 2
    assert await claim_freed(store, freed(b.id, b.tenant_id, [first[0].rowid])) == []
    await store.finish_items([ok(first[0])], now=NOW + 1)
    assert len(await claim(store)) == 1


async def test_freed_slots_are_counted_again_under_the_batch_lock(
    store: Store, make_batch: MakeBatch
) -> None:
    b = await make_batch(items=6, parallelism=2)
    first = await claim(store)
    # Committed since the claimer looked: the batch's own count has already dropped.
    await store.finish_items([ok(first[0])], now=NOW + 1)
    got = await claim_freed(store, freed(b.id, b.tenant_id, [first[0].rowid]))
    assert len(got) == 1  # one slot, not two
    assert (await fetch(store, b.id)).n_running == 2


async def test_another_claimers_items_free_no_slot(
    store: Store, make_batch: MakeBatch
) -> None:
    b = await make_batch(items=6, parallelism=2)
    first = await claim(store, owner="w1")
    assert await claim_freed(store, freed(b.id, b.tenant_id, [c.rowid for c in first]),
                             owner="w2") == []


async def test_a_batch_with_no_cap_is_bounded_only_by_the_claim(
    store: Store, make_batch: MakeBatch
) -> None:
    b = await make_batch(items=300)  # BatchSpec's parallelism: None
    assert b.parallelism is None
    assert len(await claim(store, limit=250)) == 250
    assert len(await claim(store, limit=250)) == 50
    again = await fetch(store, b.id)
    assert again.parallelism is None and again.n_running == 300
    assert UNCAPPED > 300
