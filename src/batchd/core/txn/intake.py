"""Creating batches and adding items: stage, then commit or discard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from batchd.core import admission, staging
from batchd.core.quotas import Limits, Metering
from batchd.core.txn import lifecycle, usage
from batchd.core.txn.runner import Runner
from batchd.domain import errors
from batchd.domain.models import UNCAPPED, BatchSpec
from batchd.domain.records import StagedItem
from batchd.store import script as q
from batchd.store.script import Script


def create_batch(
    batch_id: str, tenant_id: str, owner: str, spec: BatchSpec, now: float
) -> Script[None]:
    s = spec
    yield q.run(
        "insert_batch", batch_id, tenant_id, owner, s.task, s.version, s.runner,
        s.records_per_item, s.priority, UNCAPPED if s.parallelism is None else s.parallelism,
        s.fail_fast, s.max_error_pct,
        s.budget_usd, s.run_after, s.item_timeout_s, s.max_attempts, s.retry_backoff_s,
        s.expires_at, s.max_input_bytes, s.max_output_bytes, s.est_usd_per_record,
        orjson.dumps(s.metadata), now, s.deliver, s.idle_timeout_s, now, s.webhook_url,
        s.webhook_event, s.dialect,
    )


def stage_items(batch_id: str, stage: str, items: staging.Group) -> Script[None]:
    if isinstance(items, staging.PackedItems):
        count = n_records = items.count
    else:
        count, n_records = len(items), sum(i.n_records for i in items)
    row = yield q.one("reserve_seqs", count, n_records, batch_id)
    if row is None:
        raise errors.NotFound("batch not found")
    if not count:
        return
    place = _Place(seq=row[0] - count, rec=row[1] - n_records, pk=row[2],
                   # A batch being created is invisible as a whole, so its items go straight
                   # to the queue; appends to a live batch wait as 'staged' until committed.
                   status="queued" if row[3] else "staged", stage=None if row[3] else stage,
                   delivered=False if row[4] else None)
    if isinstance(items, staging.PackedItems):
        yield from _insert_packed(place, items)
    else:
        yield from _insert_rows(place, items)


@dataclass(frozen=True, slots=True)
class _Place:
    """Where an upload's next items go: their first seq and record number, their batch,
    and the status, stage token and delivery flag they start with."""

    seq: int
    rec: int
    pk: int
    status: str
    stage: str | None
    delivered: bool | None


def _insert_rows(at: _Place, items: list[StagedItem]) -> Script[None]:
    ids = [r[0] for r in (yield q.rows("reserve_item_ids", len(items)))]
    rows: list[tuple[Any, ...]] = []
    seq, rec = at.seq, at.rec
    for item_id, it in zip(ids, items, strict=True):
        rows.append((item_id, at.pk, seq, rec, it.n_records, at.status, at.stage, it.est_usd,
                     len(it.input), it.ext_id, it.meta, at.delivered, it.runner,
                     it.webhook_url, it.webhook_event))
        seq += 1
        rec += it.n_records
    yield q.each("insert_items", rows)
    yield q.each("insert_item_inputs", zip(ids, (it.input for it in items), strict=True))


def _insert_packed(at: _Place, items: staging.PackedItems) -> Script[None]:
    # One statement per table takes the items out of the array, however many there are.
    added = yield q.run(
        "insert_packed_items", pk=at.pk, seq=at.seq, rec=at.rec, status=at.status,
        stage=at.stage, est_usd=items.est_usd, delivered=at.delivered, inputs=items.inputs,
    )
    if added != items.count:
        raise errors.StoreError(f"the database read {added} items out of a group of "
                                f"{items.count}")
    yield q.run("insert_packed_inputs", count=items.count, inputs=items.inputs)


def _target(row: Any) -> admission.CommitTarget:
    # columns: pk, tenant_id, status, staging, stop_reason, in_buffer_bytes, max_input_bytes,
    # n_total
    return admission.CommitTarget(
        pk=row[0], tenant_id=row[1], status=row[2], staging=bool(row[3]), stop_reason=row[4],
        in_buffer_bytes=int(row[5]), max_input_bytes=row[6], n_total=int(row[7]),
    )


def _discard(target: admission.CommitTarget, stage: str, drop_batch: bool) -> Script[None]:
    if drop_batch and target.staging:
        yield from lifecycle.delete_batch(target.pk)
    else:
        yield from lifecycle.delete_items(target.pk, stage)


def _upload(target: admission.CommitTarget, stage: str) -> Script[admission.Upload]:
    if target.staging:
        row = yield q.one("upload_totals_of_batch", target.pk)
    else:
        row = yield q.one("upload_totals_of_stage", target.pk, stage)
    return admission.Upload(
        items=int(row[0]), records=int(row[1]), est_usd=float(row[2]), size=int(row[3])
    )


def commit_stage(
    batch_id: str, stage: str, close: bool, now: float, idempotency_key: str | None,
    request_hash: str | None, tenant_input_limit: int | None, metering: Metering | None,
    limits: Limits | None = None, tier: str = "", staged_items: int | None = None,
) -> Script[str | errors.BatchdError]:
    row = yield q.one("batch_for_commit", batch_id)  # locks the batch row (PostgreSQL)
    if row is None:
        raise errors.NotFound("batch not found")
    target = _target(row)
    replay_of = None
    if idempotency_key is not None:
        replay_of = yield q.value("batch_id_by_idempotency", target.tenant_id, idempotency_key)
    upload = yield from _upload(target, stage)
    if replay_of is None and staged_items is not None and upload.items != staged_items:
        # PostgreSQL empties its unlogged stage after a crash: part of this upload is gone.
        yield from _discard(target, stage, drop_batch=True)
        return errors.StoreError("the database lost part of this upload while it was being "
                                 "received (did it restart?); send it again")
    tenant_used = 0
    if tenant_input_limit:
        tenant_used = int((yield q.value("tenant_input_used", target.tenant_id)))
    verdict = admission.admit(target, upload, replay_of=replay_of, tenant_used=tenant_used,
                              tenant_limit=tenant_input_limit, limits=limits, tier=tier)
    if isinstance(verdict, admission.Replay):
        yield from _discard(target, stage, drop_batch=True)
        return verdict.batch_id
    if isinstance(verdict, admission.Refuse):
        yield from _discard(target, stage, verdict.drop_batch)
        return verdict.error  # returned, not raised: raising would roll the discard back
    yield from _admit(target, upload, batch_id, stage, close, now, idempotency_key,
                      request_hash, metering)
    return batch_id


def _admit(
    b: admission.CommitTarget, upload: admission.Upload, batch_id: str, stage: str,
    close: bool, now: float, idempotency_key: str | None, request_hash: str | None,
    metering: Metering | None,
) -> Script[None]:
    # The upload's items join the queue, and what waited for them in the stage goes.
    if b.staging:
        yield q.run("queue_new_batch", b.pk)
        yield q.run("delete_batch_stage", b.pk)
    else:
        yield q.run("queue_stage", b.pk, stage)
        yield from lifecycle.delete_items(b.pk, stage)
    yield q.run(
        "count_upload", upload.items, upload.items, upload.records, upload.est_usd,
        upload.size, upload.size, now, idempotency_key, request_hash, close, close, now, b.pk,
    )
    yield from usage.add_usage(b.tenant_id, now, items_submitted=upload.items,
                               records_submitted=upload.records)
    if metering is not None:  # after the batch row: the lock order of every writer
        yield from usage.meter(metering, now)  # raises (rolls back) past a quota
    kind = "batch.created" if b.staging else "batch.items_added"
    yield from usage.add_event(b.tenant_id, batch_id, kind, now, {"items": upload.items})
    if close:
        yield from usage.add_event(b.tenant_id, batch_id, "batch.closed", now)
        yield from lifecycle.maybe_finish(batch_id, now)
    if upload.items:
        yield q.run("notify_work")  # wakes idle workers elsewhere (PostgreSQL)


def discard_stage(batch_id: str, stage: str, drop_batch: bool) -> Script[None]:
    row = yield q.one("batch_for_discard", batch_id)
    if row is not None:
        yield from _discard(_target(row), stage, drop_batch)


class IntakeOps(Runner):
    async def create_batch(
        self, *, batch_id: str, tenant_id: str, owner: str, spec: BatchSpec, now: float
    ) -> None:
        """Insert a batch that stays invisible until its first upload commits."""
        await self._write(create_batch, batch_id, tenant_id, owner, spec, now)

    async def stage_items(self, batch_id: str, stage: str, items: staging.Group) -> None:
        """Write items that stay invisible until :meth:`commit_stage`."""
        await self._write(stage_items, batch_id, stage, items)

    async def commit_stage(
        self, batch_id: str, stage: str, *, close: bool, now: float,
        idempotency_key: str | None = None, request_hash: str | None = None,
        tenant_input_limit: int | None = None, metering: Metering | None = None,
        limits: Limits | None = None, tier: str = "", staged_items: int | None = None,
    ) -> str:
        """Make staged items runnable and count them, in one transaction.

        With ``staged_items`` (how many items the caller staged), an upload the database
        holds fewer of (PostgreSQL empties its unlogged stage when it restarts) is
        discarded and :class:`batchd.domain.errors.StoreError` raised: send it again.

        With ``limits`` (the caller's tier ``tier``), the batch may not grow past their
        batch size: :class:`batchd.domain.errors.BatchTooLarge`, the upload discarded.

        ``metering`` is added to the usage in the same transaction, after the items,
        and its quotas checked; if one is passed, nothing is committed and
        :class:`batchd.domain.errors.QuotaExceeded` raised (the stage stays, to discard).

        The upload must fit the batch's input buffer (``max_input_bytes``) and the
        tenant's (``tenant_input_limit`` over its active batches); if it does not, it is
        discarded and :class:`batchd.core.quotas.InputBufferFull` raised.

        Returns the batch id that holds the request: ``batch_id``, or the batch an
        earlier request with the same idempotency key created (whose hash the
        caller must compare).

        Raises:
            errors.Conflict: the batch no longer accepts items.
        """
        holder = await self._write(
            commit_stage, batch_id, stage, close, now, idempotency_key, request_hash,
            tenant_input_limit, metering, limits, tier, staged_items,
        )
        assert isinstance(holder, str)
        return holder

    async def discard_stage(self, batch_id: str, stage: str, *, drop_batch: bool) -> None:
        """Drop an upload's staged items; with ``drop_batch``, a batch still being created
        goes too."""
        await self._write(discard_stage, batch_id, stage, drop_batch)

    async def reclaim_space(self) -> None:
        """Have the store give back the space that staging used (see
        :meth:`batchd.store.base.Store.reclaim_space`)."""
        await self.store.reclaim_space()
