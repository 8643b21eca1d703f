"""Store contract for webhooks, per-item runners and task definitions, over every backend.

The outbox message of an outcome is written in the outcome's transaction: no outcome
without its message, no message without its outcome.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from batchd.domain.models import BatchSpec, Outcome, new_id
from batchd.domain.records import StagedItem
from batchd.domain.states import StopReason
from batchd.domain.taskdefs import TaskRecord
from batchd.domain.webhooks import WebhookAttempt
from batchd.store.base import Store
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import LEASE_S, NOW, stage_token

store = contract.store  # the contract suite's fixture: every backend

pytestmark = pytest.mark.timeout(scaled(30))
EVENT = "task_run.status"


async def hooked_batch(
    store: Store, n: int = 3, *, hooked: tuple[int, ...] = (0, 1),
    runners: dict[int, str] | None = None, batch_webhook: str | None = None,
    tenant: str = "acme", **settings: Any,
) -> tuple[str, str]:
    t = await store.ensure_tenant(tenant, tier="free", now=NOW)
    batch_id = new_id("bat")
    await store.create_batch(
        batch_id=batch_id, tenant_id=t.id, owner="alice",
        spec=BatchSpec(task="echo", version="1.0.0", runner="base", webhook_url=batch_webhook,
                       webhook_event="batch.finished" if batch_webhook else None, **settings),
        now=NOW,
    )
    stage = stage_token(NOW)
    await store.stage_items(batch_id, stage, [
        StagedItem(1, orjson.dumps({"n": i}), 0.0, runner=(runners or {}).get(i),
                   webhook_url=f"https://hooks.example/{i}" if i in hooked else None,
                   webhook_event=EVENT if i in hooked else None)
        for i in range(n)
    ])
    assert await store.commit_stage(batch_id, stage, close=True, now=NOW) == batch_id
    return batch_id, t.id


async def claim_all(store: Store, n: int) -> list[Any]:
    return await store.claim_items(owner="w1", limit=n, now=NOW, lease_s=LEASE_S, tenant_cap=0)


async def test_outbox_message_is_written_with_the_outcome(store: Store) -> None:
    batch_id, tenant_id = await hooked_batch(store, 3, hooked=(0, 1))
    claimed = await claim_all(store, 3)
    assert await store.next_webhook_at() is None

    done = [Outcome(rowid=c.rowid, fence=c.fence, status="succeeded", output=b"{}")
            for c in claimed[:1]]
    done.append(Outcome(rowid=claimed[1].rowid, fence=claimed[1].fence, status="queued",
                        retry_at=NOW + 5))  # a retry is not an outcome: no message
    assert await store.finish_items(done, now=NOW + 1) == 2

    found = await store.list_webhooks(tenant_id=tenant_id, owner=None, batch_id=batch_id,
                                      status=None, before_pk=None, limit=10)
    assert [(m.item_rowid, m.event, m.url, m.status, m.attempts) for m in found] == [
        (claimed[0].rowid, EVENT, "https://hooks.example/0", "pending", 0)]
    assert await store.next_webhook_at() == NOW + 1


async def test_outbox_message_is_not_written_by_a_stale_outcome(store: Store) -> None:
    batch_id, tenant_id = await hooked_batch(store, 1, hooked=(0,))
    (c,) = await claim_all(store, 1)
    stale = Outcome(rowid=c.rowid, fence=c.fence - 1, status="succeeded", output=b"{}")
    assert await store.finish_items([stale], now=NOW + 1) == 0
    assert await store.list_webhooks(tenant_id=tenant_id, owner=None, batch_id=batch_id,
                                     status=None, before_pk=None, limit=10) == []


async def test_outbox_cancelled_runs_and_finished_batch_get_messages(store: Store) -> None:
    batch_id, tenant_id = await hooked_batch(
        store, 3, hooked=(0, 1, 2), batch_webhook="https://hooks.example/batch")
    assert await store.stop_batch(batch_id, reason=StopReason.CANCELLED, detail=None,
                                  now=NOW + 2)
    found = await store.list_webhooks(tenant_id=tenant_id, owner=None, batch_id=batch_id,
                                      status=None, before_pk=None, limit=10)
    assert sorted((m.event, m.url) for m in found) == sorted(
        [(EVENT, f"https://hooks.example/{i}") for i in range(3)]
        + [("batch.finished", "https://hooks.example/batch")]
    )
    batch = await store.get_batch(batch_id, tenant_id=None)
    assert batch is not None and batch.webhook_url == "https://hooks.example/batch"


async def test_outbox_claim_leases_and_records_attempts(store: Store) -> None:
    batch_id, tenant_id = await hooked_batch(store, 2, hooked=(0, 1))
    claimed = await claim_all(store, 2)
    await store.finish_items(
        [Outcome(rowid=c.rowid, fence=c.fence, status="succeeded", output=b"{}")
         for c in claimed], now=NOW)

    first = await store.claim_webhooks(now=NOW + 1, limit=1, lease_s=10)
    assert len(first) == 1 and first[0].attempts == 1
    second = await store.claim_webhooks(now=NOW + 1, limit=10, lease_s=10)
    assert [m.pk for m in second] != [first[0].pk] and len(second) == 1  # leased: not again
    assert await store.claim_webhooks(now=NOW + 2, limit=10, lease_s=10) == []

    m = first[0]
    failed = WebhookAttempt(message_pk=m.pk, attempt=1, at=NOW + 2, status_code=500,
                            error="HTTP 500", duration_ms=3.0)
    assert await store.record_webhook_attempt(failed, status="pending",
                                              next_attempt_at=NOW + 5)
    again = await store.claim_webhooks(now=NOW + 5, limit=10, lease_s=10)
    assert [(x.pk, x.attempts) for x in again] == [(m.pk, 2)]
    # A late result of attempt 1 (its lease had run out) changes nothing but the log.
    assert not await store.record_webhook_attempt(
        WebhookAttempt(message_pk=m.pk, attempt=1, at=NOW + 6, status_code=200, error=None,
                       duration_ms=1.0), status="delivered", next_attempt_at=None)
    ok = WebhookAttempt(message_pk=m.pk, attempt=2, at=NOW + 7, status_code=200, error=None,
                        duration_ms=1.0)
    assert await store.record_webhook_attempt(ok, status="delivered", next_attempt_at=None)

    got = await store.get_webhook(m.id, tenant_id=tenant_id, owner="alice")
    assert got is not None and (got.status, got.delivered_at, got.last_status) == (
        "delivered", NOW + 7, 200)
    assert await store.get_webhook(m.id, tenant_id=tenant_id, owner="bob") is None
    assert await store.get_webhook(m.id, tenant_id="ten_other", owner=None) is None
    log = await store.webhook_attempts(m.pk)
    assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (1, 200), (2, 200)]
    assert await store.list_webhooks(tenant_id=tenant_id, owner=None, batch_id=None,
                                     status="delivered", before_pk=None, limit=10) == [got]


async def test_items_keep_their_own_runner(store: Store) -> None:
    batch_id, tenant_id = await hooked_batch(store, 2, hooked=(), runners={1: "pro"})
    claimed = {c.seq: c for c in await claim_all(store, 2)}
    assert (claimed[0].runner, claimed[1].runner) == ("base", "pro")
    item = await store.get_item(batch_id, claimed[1].rowid)
    assert item is not None and item.runner == "pro"
    await store.finish_items(
        [Outcome(rowid=c.rowid, fence=c.fence, status="succeeded", output=b'{"ok":1}')
         for c in claimed.values()], now=NOW)
    page = await store.export_page(batch_id, status="succeeded", after_seq=-1, limit=10)
    assert page is not None
    assert (page.count, page.last_seq, page.runners) == (2, 1, [None, "pro"])
    assert page.ids == [claimed[0].rowid, claimed[1].rowid]
    assert page.inputs == b'[{"n":0},{"n":1}]' and page.input_lengths == [7, 7]
    assert page.outputs == b'[{"ok":1},{"ok":1}]' and page.output_lengths == [8, 8]
    assert await store.export_page(batch_id, status="succeeded", after_seq=1, limit=10) is None
    assert await store.export_page(batch_id, status="failed", after_seq=-1, limit=10) is None
    assert await store.item_states(batch_id, after_seq=0, limit=10) == [
        (1, claimed[1].rowid, "succeeded")]
    assert await store.item_batch(claimed[1].rowid, tenant_id=tenant_id) == batch_id
    assert await store.item_batch(claimed[1].rowid, tenant_id="ten_other") is None


async def test_webhook_secret_is_made_once_and_rotated(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    first = await store.webhook_secret(t.id, candidate="whsec_one")
    assert first == "whsec_one"
    assert await store.webhook_secret(t.id, candidate="whsec_two") == "whsec_one"
    assert await store.webhook_secret(t.id, candidate="whsec_three", rotate=True) == "whsec_three"


async def test_task_definitions_are_kept_once(store: Store) -> None:
    record = TaskRecord(name="shout", version="1.0.0", kind="http",
                        spec={"name": "shout", "config": {"url": "https://x"}},
                        tenant_id="ten_1", created_at=NOW)
    assert await store.save_task_def(record) == record
    other = TaskRecord(name="shout", version="1.0.0", kind="http", spec={"changed": True},
                       tenant_id="ten_2", created_at=NOW + 1)
    assert await store.save_task_def(other) == record  # the first stays
    await store.save_task_def(TaskRecord(name="shout", version="1.1.0", kind="http", spec={},
                                         tenant_id=None, created_at=NOW + 2))
    assert [(r.name, r.version) for r in await store.task_defs()] == [
        ("shout", "1.0.0"), ("shout", "1.1.0")]
