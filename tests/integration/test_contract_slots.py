"""Contract tests, on every backend, for a batch's parallelism: a slot is free when its
handler returns (the claimer's finished, uncommitted items), not when its outcome is
committed, and the cap still holds exactly; a batch created with no cap has none."""

from __future__ import annotations

import pytest

from batchd.domain.models import UNCAPPED, Batch, ClaimedItem, FreedSlots, Item, Promotion
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


# Reserves: a full batch's next items held by a claimer, started in its freed slots.

async def reserve(store: Store, batch_id: str, n: int, *, owner: str = "w1",
                  now: float = NOW) -> list[ClaimedItem]:
    got = await store.claim_items(owner=owner, limit=100, now=now, lease_s=LEASE_S,
                                  tenant_cap=0, reserve={batch_id: n})
    assert all(c.reserved for c in got), "a full batch hands out nothing to start"
    return got


def promotion(item: ClaimedItem, at: float) -> Promotion:
    return Promotion(rowid=item.rowid, fence=item.fence, batch_id=item.batch_id,
                     tenant_id=item.tenant_id, est_usd=item.est_usd, started_at=at)


def consistent(b: Batch) -> None:
    assert b.n_queued + b.n_running + b.n_succeeded + b.n_failed + b.n_cancelled == b.n_total


async def full_with_reserve(
    store: Store, make_batch: MakeBatch, *, items: int, parallelism: int
) -> tuple[Batch, list[ClaimedItem], list[ClaimedItem]]:
    """A batch claimed up to its cap by w1, which holds as many more in reserve."""
    b = await make_batch(items=items, parallelism=parallelism)
    first = await claim(store)
    assert len(first) == parallelism
    return b, first, await reserve(store, b.id, parallelism)


async def item_of(store: Store, b: Batch, rowid: int) -> Item:
    found = await store.get_item(b.id, rowid)
    assert found is not None
    return found


async def test_a_full_batchs_reserve_starts_in_a_freed_slot_with_no_claim(
    store: Store, make_batch: MakeBatch
) -> None:
    b, first, held = await full_with_reserve(store, make_batch, items=6, parallelism=2)
    assert len(held) == 2 and {c.seq for c in held} == {2, 3}
    after = await fetch(store, b.id)
    assert (after.n_running, after.n_queued) == (2, 4)  # held, still queued
    # The first item's handler returned; a reserved one started in its slot at NOW + 1.
    nxt = promotion(held[0], NOW + 1)
    assert await store.finish_items([ok(first[0])], now=NOW + 1, promotions=[nxt],
                                    owner="w1", lease_s=LEASE_S) == 1
    assert not nxt.refused
    now = await fetch(store, b.id)
    assert (now.n_running, now.n_queued, now.n_succeeded) == (2, 3, 1)  # slot taken again
    consistent(now)
    started = await item_of(store, b, held[0].rowid)
    assert (started.status, started.attempts, started.started_at) == ("running", 1, NOW + 1)
    # It runs under the lease and fence it was reserved with: its outcome counts.
    assert await store.finish_items([ok(held[0])], now=NOW + 2) == 1
    assert (await item_of(store, b, held[0].rowid)).status == "succeeded"


async def test_an_item_and_its_promotion_commit_together(
    store: Store, make_batch: MakeBatch
) -> None:
    b, (first,), (held,) = await full_with_reserve(store, make_batch, items=4, parallelism=1)
    # Started and finished before anything was committed: one commit records both.
    assert await store.finish_items([ok(first), ok(held)], now=NOW + 2,
                                    promotions=[promotion(held, NOW + 1)], owner="w1",
                                    lease_s=LEASE_S) == 2
    done = await fetch(store, b.id)
    assert (done.n_running, done.n_succeeded, done.n_queued) == (0, 2, 2)
    consistent(done)


async def test_a_reserved_item_is_nobody_elses_until_its_lease_ends(
    store: Store, make_batch: MakeBatch
) -> None:
    b, first, held = await full_with_reserve(store, make_batch, items=4, parallelism=2)
    await store.finish_items([ok(i) for i in first], now=NOW + 1)  # two slots free
    assert await claim(store, owner="w2", now=NOW + 2) == []  # the rest is held
    # The holder died: its lease runs out, and the items are anyone's.
    late = NOW + LEASE_S + 5
    taken = await claim(store, owner="w2", now=late)
    assert {c.rowid for c in taken} == {c.rowid for c in held}
    # The old holder's promotion comes too late: refused, and its run is void.
    stale = promotion(held[0], late + 1)
    await store.finish_items([], now=late + 1, promotions=[stale], owner="w1",
                             lease_s=LEASE_S)
    assert stale.refused
    assert await store.finish_items([ok(held[0])], now=late + 2) == 0
    assert await store.finish_items([ok(taken[0])], now=late + 2) == 1
    consistent(await fetch(store, b.id))


async def test_a_promotion_into_a_paused_batch_is_refused_and_given_back(
    store: Store, make_batch: MakeBatch
) -> None:
    b, first, held = await full_with_reserve(store, make_batch, items=5, parallelism=2)
    assert await store.pause_batch(b.id, now=NOW + 1) == 3
    nxt = promotion(held[0], NOW + 2)
    await store.finish_items([ok(first[0])], now=NOW + 2, promotions=[nxt], owner="w1",
                             lease_s=LEASE_S)
    assert nxt.refused
    assert (await item_of(store, b, held[0].rowid)).status == "queued"
    assert await store.finish_items([ok(held[0])], now=NOW + 3) == 0  # void
    paused = await fetch(store, b.id)
    assert (paused.n_running, paused.n_queued) == (1, 3)
    consistent(paused)
    # Given back: once resumed, another claimer takes it (the other held item too,
    # once its holder gives it back).
    await store.release_items(owner="w1", rowids=[held[1].rowid])
    await store.resume_batch(b.id, now=NOW + 4)
    taken = await claim(store, owner="w2", now=NOW + 5)
    assert {c.rowid for c in taken} == {held[0].rowid}  # one slot free of two
    await store.finish_items([ok(first[1]), ok(taken[0])], now=NOW + 6)
    assert {c.rowid for c in await claim(store, owner="w2", now=NOW + 7)} >= {held[1].rowid}


async def test_a_batch_with_room_a_budget_or_no_cap_reserves_nothing(
    store: Store, make_batch: MakeBatch
) -> None:
    roomy = await make_batch(items=6, parallelism=4)
    assert len(await claim(store, limit=2)) == 2
    got = await store.claim_items(owner="w1", limit=0, now=NOW, lease_s=LEASE_S,
                                  tenant_cap=0, reserve={roomy.id: 2})
    assert got == []
    budgeted = await make_batch(items=4, parallelism=1, est_usd=0.01, budget_usd=1.0)
    uncapped = await make_batch(items=4)
    await store.claim_items(owner="w1", limit=100, now=NOW, lease_s=LEASE_S, tenant_cap=0)
    for b in (budgeted, uncapped):
        got = await store.claim_items(owner="w1", limit=0, now=NOW, lease_s=LEASE_S,
                                      tenant_cap=0, reserve={b.id: 2})
        assert [c for c in got if c.batch_id == b.id] == []
