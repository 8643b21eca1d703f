"""Contract tests, on every backend, for the stop target and the finish verdict
(core/lifecycle.py): the decisions both stores run through one core script."""

from __future__ import annotations

import pytest

from batchd.domain.states import StopReason
from batchd.store.base import Store
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import NOW, MakeBatch, claim, failed, fetch, ok

store = contract.store
make_batch = contract.make_batch

pytestmark = pytest.mark.timeout(scaled(30))


@pytest.mark.parametrize(
    ("reason", "status"),
    [(StopReason.CANCELLED, "cancelled"), (StopReason.EXPIRED, "expired"),
     (StopReason.FAIL_FAST, "failed"), (StopReason.BUDGET_EXCEEDED, "failed")],
)
async def test_stop_target_of_an_idle_batch(
    store: Store, make_batch: MakeBatch, reason: str, status: str
) -> None:
    batch = await make_batch(items=2)

    assert await store.stop_batch(batch.id, reason=reason, detail=None, now=NOW + 1) is True

    done = await fetch(store, batch.id)
    assert (done.status, done.stop_reason, done.n_cancelled) == (status, reason, 2)
    assert done.finished_at == NOW + 1
    assert done.error == {"code": reason, "message": reason.replace("_", " ")}


async def test_stop_target_closed_reason_ends_partial_once_running_items_drain(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=3, parallelism=1)
    [a] = await claim(store)

    assert await store.stop_batch(
        batch.id, reason=StopReason.BUDGET_EXCEEDED, detail="cap reached", now=NOW + 1
    ) is True
    mid = await fetch(store, batch.id)
    assert (mid.status, mid.finished_at, mid.n_running, mid.n_cancelled) == ("closed", None, 1, 2)

    await store.finish_items([ok(a)], now=NOW + 2)
    done = await fetch(store, batch.id)
    assert (done.status, done.finished_at) == ("partial", NOW + 2)
    assert done.error == {"code": "budget_exceeded", "message": "cap reached"}


async def test_stop_first_reason_wins_and_a_finished_batch_cannot_be_stopped(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2, parallelism=1)
    [a] = await claim(store)
    assert await store.stop_batch(batch.id, reason=StopReason.FAIL_FAST, detail=None,
                                  now=NOW + 1) is True
    assert await store.stop_batch(batch.id, reason=StopReason.CANCELLED, detail=None,
                                  now=NOW + 2) is False
    await store.finish_items([failed(a)], now=NOW + 3)
    done = await fetch(store, batch.id)
    assert (done.status, done.stop_reason) == ("failed", "fail_fast")

    assert await store.stop_batch(batch.id, reason=StopReason.CANCELLED, detail=None,
                                  now=NOW + 4) is False
    assert await fetch(store, batch.id) == done


async def test_finish_verdict_waits_for_the_last_running_item(
    store: Store, make_batch: MakeBatch
) -> None:
    batch = await make_batch(items=2)
    a, b = await claim(store)

    await store.finish_items([ok(a)], now=NOW + 1)
    assert (await fetch(store, batch.id)).finished_at is None
    await store.finish_items([failed(b)], now=NOW + 2)

    done = await fetch(store, batch.id)
    assert (done.status, done.finished_at) == ("partial", NOW + 2)
