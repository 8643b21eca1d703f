"""The AI job queue's jobs and provider batches.

Jobs wait in a table of their own until a flush takes them: a flush is one
transaction that picks the ready jobs (:func:`batchd.core.jobs.is_ready`), highest
priority first, marks them ``processing`` and records a provider batch in state
``submitting``; the provider's batch id is recorded once the provider accepted the
batch. A poll records outcomes with guarded updates, so concurrent polls record each
job once (:func:`batchd.core.jobs.partition_outcomes`).
"""

from __future__ import annotations

from typing import Any

from batchd.core import jobs
from batchd.core.jobs import (
    BatchState,
    Job,
    JobOutcome,
    JobPick,
    JobTotals,
    NewJob,
    QueueBatch,
    ReadyCount,
    Unrecorded,
    WaitingJob,
)
from batchd.core.txn.runner import Runner
from batchd.store import script as q
from batchd.store.script import Script


def _blob(v: Any) -> bytes | None:
    return None if v is None else bytes(v)


def _job(r: Any) -> Job:
    # job columns: see store/sql/*/jobqueue.sql
    job = Job(*(r[i] for i in range(18)))
    job.payload, job.result = _blob(r[18]), _blob(r[19])
    return job


def _batch(r: Any) -> QueueBatch:
    return QueueBatch(*(r[i] for i in range(9)))


def enqueue_job(job: NewJob, now: float) -> Script[tuple[Job, bool]]:
    pk = yield q.value("insert_job", job.id, job.tenant_id, job.owner, job.job_type,
                       job.priority, job.custom_id, job.idempotency_key, job.run_after,
                       job.payload, now, now)
    if pk is not None:
        return jobs.fresh(job, pk=int(pk), now=now), True
    # Only an idempotency key conflicts: the job this owner enqueued with it first.
    row = yield q.one("job_by_idempotency_key", job.tenant_id, job.owner, job.idempotency_key)
    return _job(row), False


def get_job(job_id: str, tenant_id: str, full: bool) -> Script[Job | None]:
    if full:
        row = yield q.one("job_full", job_id, tenant_id)
    else:
        row = yield q.one("job", job_id, tenant_id)
    return None if row is None else _job(row)


def list_jobs(tenant_id: str, owner: str | None, limit: int) -> Script[list[Job]]:
    rows = yield q.rows("list_jobs", tenant_id=tenant_id, owner=owner, limit=limit)
    return [_job(r) for r in rows]


def job_counts(tenant_id: str, owner: str | None) -> Script[dict[str, int]]:
    rows = yield q.rows("job_counts", tenant_id=tenant_id, owner=owner)
    return {r[0]: int(r[1]) for r in rows}


def job_totals(tenant_id: str, owner: str | None) -> Script[JobTotals]:
    return jobs.summarise((yield q.rows("job_totals", tenant_id=tenant_id, owner=owner)))


def cancel_job(job_id: str, tenant_id: str, now: float) -> Script[tuple[Job, str] | None]:
    status = yield q.value("job_status_for_update", job_id, tenant_id)
    if status is None or not jobs.cancellable(status):
        return None
    yield q.run("cancel_job", now, job_id)
    return _job((yield q.one("job", job_id, tenant_id))), str(status)


def take_jobs(
    tenant_id: str, pick: JobPick, provider: str, model: str | None, now: float
) -> Script[tuple[QueueBatch, list[Job]] | None]:
    batch_pk = int((yield q.value("insert_queue_batch", tenant_id, provider, model, now)))
    n = yield q.run(
        "take_ready_jobs", batch_pk=batch_pk, now=now, tenant_id=tenant_id,
        min_priority=pick.min_priority, max_jobs=pick.max_jobs,
        job_types=None if pick.job_types is None else q.array(pick.job_types),
    )
    if n <= 0:
        yield q.run("delete_queue_batch", batch_pk)
        return None
    yield q.run("set_queue_batch_size", n, batch_pk)
    taken = [_job(r) for r in (yield q.rows("jobs_of_batch", batch_pk))]
    batch = QueueBatch(
        pk=batch_pk, tenant_id=tenant_id, provider=provider, provider_batch_id=None,
        model=model, status=BatchState.SUBMITTING, n_jobs=n, created_at=now, ended_at=None,
    )
    return batch, taken


def mark_submitted(batch_pk: int, provider_batch_id: str, now: float) -> Script[bool]:
    return bool((yield q.run("mark_submitted", provider_batch_id, now, batch_pk)) == 1)


def release_batch(batch_pk: int, now: float) -> Script[int]:
    n = yield q.run("release_jobs", now, batch_pk)
    yield q.run("detach_jobs", batch_pk)
    yield q.run("delete_queue_batch", batch_pk)
    return max(0, int(n))


def stale_submissions(created_before: float) -> Script[list[int]]:
    return [int(r[0]) for r in (yield q.rows("stale_submissions", created_before))]


def queue_batch(provider_batch_id: str, tenant_id: str) -> Script[QueueBatch | None]:
    row = yield q.one("queue_batch", provider_batch_id, tenant_id)
    return None if row is None else _batch(row)


def open_queue_batches(limit: int) -> Script[list[QueueBatch]]:
    return [_batch(r) for r in (yield q.rows("open_queue_batches", limit))]


def waiting_jobs(batch_pk: int) -> Script[list[WaitingJob]]:
    rows = yield q.rows("waiting_jobs", batch_pk)
    return [WaitingJob(r[0], r[1], r[2], r[3]) for r in rows]


def record_outcomes(
    batch_pk: int, outcomes: list[JobOutcome], ended: bool, now: float
) -> Script[tuple[list[str], int]]:
    rows = yield q.rows("unrecorded_jobs_for_update", batch_pk)
    plan = jobs.partition_outcomes(outcomes, (Unrecorded(r[0], r[1], r[2]) for r in rows),
                                   now=now)
    yield q.each("record_job_outcome", [
        (f.status.value, f.outcome.result, f.outcome.error, f.outcome.tokens_in,
         f.outcome.tokens_out, f.outcome.cost_usd, f.outcome.savings_usd, f.completed_at, now,
         now, f.pk)
        for f in plan.finals
    ])
    yield q.each("record_job_tokens", [
        (o.tokens_in, o.tokens_out, o.cost_usd, o.savings_usd, now, pk)
        for pk, o in plan.tokens_only
    ])
    if ended:
        yield q.run("end_queue_batch", now, batch_pk)
    remaining = yield q.value("count_processing_jobs", batch_pk)
    return plan.done, int(remaining)


def ready_tenants(
    now: float, min_count: int, oldest_before: float | None
) -> Script[list[str]]:
    rows = yield q.rows("ready_job_counts", now)
    counts = (ReadyCount(str(r[0]), int(r[1]), float(r[2])) for r in rows)
    return [c.tenant_id for c in counts
            if jobs.flush_due(c, min_count=min_count, oldest_before=oldest_before)]


class JobQueueOps(Runner):
    """Durable state of queued jobs and the provider batches they were flushed into."""

    async def enqueue_job(self, job: NewJob, *, now: float) -> tuple[Job, bool]:
        """Insert ``job``, or return the job the same owner enqueued earlier with the same
        ``idempotency_key``; the flag says whether the job is new."""
        return await self._write(enqueue_job, job, now)

    async def get_job(self, job_id: str, *, tenant_id: str, full: bool = False) -> Job | None:
        """The job, with its payload and result when ``full``."""
        return await self._read(get_job, job_id, tenant_id, full)

    async def list_jobs(self, *, tenant_id: str, owner: str | None, limit: int) -> list[Job]:
        """The newest jobs first (``owner`` None: the whole tenant's)."""
        return await self._read(list_jobs, tenant_id, owner, limit)

    async def job_counts(self, *, tenant_id: str, owner: str | None) -> dict[str, int]:
        """How many jobs are in each status."""
        return await self._read(job_counts, tenant_id, owner)

    async def job_totals(self, *, tenant_id: str, owner: str | None) -> JobTotals:
        return await self._read(job_totals, tenant_id, owner)

    async def cancel_job(
        self, job_id: str, *, tenant_id: str, now: float
    ) -> tuple[Job, str] | None:
        """Cancel a pending or processing job; returns it and the status it had, or None
        when it was in neither (the caller reads it again to say why)."""
        return await self._write(cancel_job, job_id, tenant_id, now)

    async def take_jobs(
        self, *, tenant_id: str, pick: JobPick, provider: str, model: str | None, now: float
    ) -> tuple[QueueBatch, list[Job]] | None:
        """Move the jobs ``pick`` selects to ``processing`` in a new provider batch
        (``submitting``); their payloads are included. None when no job is ready."""
        return await self._write(take_jobs, tenant_id, pick, provider, model, now)

    async def mark_submitted(self, batch_pk: int, provider_batch_id: str, *, now: float) -> bool:
        """Record the provider's id of a submitted batch; False if it was released."""
        return await self._write(mark_submitted, batch_pk, provider_batch_id, now)

    async def release_batch(self, batch_pk: int, *, now: float) -> int:
        """Return a batch's processing jobs to ``pending`` and forget the batch (the
        provider refused it); returns how many jobs went back."""
        return await self._write(release_batch, batch_pk, now)

    async def stale_submissions(self, *, created_before: float) -> list[int]:
        """Batches still ``submitting`` that were created before ``created_before``."""
        return await self._read(stale_submissions, created_before)

    async def queue_batch(self, provider_batch_id: str, *, tenant_id: str) -> QueueBatch | None:
        return await self._read(queue_batch, provider_batch_id, tenant_id)

    async def open_queue_batches(self, *, limit: int) -> list[QueueBatch]:
        """Submitted batches not yet ended, over every tenant, oldest first."""
        return await self._read(open_queue_batches, limit)

    async def waiting_jobs(self, batch_pk: int) -> list[WaitingJob]:
        """Jobs of the batch whose outcome was not recorded yet (processing, or cancelled
        after the flush: their tokens are still recorded when the result arrives)."""
        return await self._read(waiting_jobs, batch_pk)

    async def record_outcomes(
        self, batch_pk: int, outcomes: list[JobOutcome], *, ended: bool, now: float
    ) -> tuple[list[str], int]:
        """Record outcomes in one transaction; a processing job takes its outcome, a job
        cancelled after the flush only its tokens and cost. With ``ended`` the batch is
        marked ended. Returns the custom ids of the jobs that ended now, and how many
        jobs of the batch are still processing."""
        return await self._write(record_outcomes, batch_pk, outcomes, ended, now)

    async def ready_tenants(
        self, *, now: float, min_count: int, oldest_before: float | None
    ) -> list[str]:
        """Tenants with at least ``min_count`` ready jobs (0: ignored), or with a ready job
        created before ``oldest_before`` (None: ignored)."""
        return await self._read(ready_tenants, now, min_count, oldest_before)
