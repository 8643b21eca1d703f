"""The AI job queue's domain: typed jobs that wait until a flush puts them in a provider batch.

A job is ``pending`` until a flush takes it, ``processing`` while its provider batch
runs, and ``completed``, ``failed`` or ``cancelled`` once a poll has recorded its
outcome (or it was cancelled). Pending jobs live in the store's own jobs table, not
in an engine batch: each job has its own priority and ``run_after``, and a flush
takes any subset of them, which engine batches (one priority, items fixed at
creation) cannot express.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ResultKind(StrEnum):
    """How a provider says one request of a batch ended (Message Batches' words)."""

    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    CANCELED = "canceled"
    EXPIRED = "expired"


JOB_STATUS_OF: dict[ResultKind, JobStatus] = {
    ResultKind.SUCCEEDED: JobStatus.COMPLETED,
    ResultKind.ERRORED: JobStatus.FAILED,
    ResultKind.EXPIRED: JobStatus.FAILED,
    ResultKind.CANCELED: JobStatus.CANCELLED,
}
CANCELLABLE = (JobStatus.PENDING, JobStatus.PROCESSING)


class BatchState(StrEnum):
    """A provider batch as batchd tracks it."""

    SUBMITTING = "submitting"  # jobs taken, the provider not yet answered
    IN_PROGRESS = "in_progress"
    ENDED = "ended"


@dataclass(slots=True)
class NewJob:
    id: str
    tenant_id: str
    owner: str
    job_type: str
    payload: bytes  # JSON
    priority: int
    run_after: float | None
    idempotency_key: str | None
    custom_id: str


@dataclass(slots=True)
class Job:
    pk: int
    id: str
    tenant_id: str
    owner: str
    job_type: str
    status: str
    priority: int
    custom_id: str
    batch_id: str | None  # the provider's batch id, once submitted
    created_at: float
    updated_at: float
    run_after: float | None
    completed_at: float | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    savings_usd: float
    error_message: str | None
    payload: bytes | None = None
    result: bytes | None = None

    @property
    def tokens_used(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(frozen=True, slots=True)
class JobPick:
    """Which pending jobs a flush takes: ready ones, highest priority first."""

    max_jobs: int
    job_types: tuple[str, ...] | None = None
    min_priority: int = 0


@dataclass(slots=True)
class QueueBatch:
    pk: int
    tenant_id: str
    provider: str
    provider_batch_id: str | None
    model: str | None
    status: str
    n_jobs: int
    created_at: float
    ended_at: float | None


@dataclass(slots=True)
class WaitingJob:
    """A job of a provider batch whose result has not been recorded yet."""

    custom_id: str
    job_id: str
    job_type: str
    status: str  # processing, or cancelled after it was flushed


@dataclass(slots=True)
class JobOutcome:
    """One request's result as a provider reports it, priced."""

    custom_id: str
    kind: ResultKind
    result: bytes | None = None  # JSON
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    savings_usd: float = 0.0
    processing_ms: int = 0
    finished_at: float | None = None


@dataclass(slots=True)
class JobTotals:
    """A tenant's (or one owner's) jobs summed up."""

    counts: dict[str, int]
    tokens: int
    cost_usd: float
    savings_usd: float
    completed_hours: float  # summed completed_at - created_at of completed jobs

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, status: JobStatus) -> int:
        return self.counts.get(status.value, 0)

    @property
    def avg_processing_hours(self) -> float:
        done = self.count(JobStatus.COMPLETED)
        return self.completed_hours / done if done else 0.0


def fresh(job: NewJob, *, pk: int, now: float) -> Job:
    """The record of a job just enqueued."""
    return Job(
        pk=pk, id=job.id, tenant_id=job.tenant_id, owner=job.owner, job_type=job.job_type,
        status=JobStatus.PENDING, priority=job.priority, custom_id=job.custom_id,
        batch_id=None, created_at=now, updated_at=now, run_after=job.run_after,
        completed_at=None, tokens_in=0, tokens_out=0, cost_usd=0.0, savings_usd=0.0,
        error_message=None,
    )


def summarise(rows: Iterable[Iterable[Any]]) -> JobTotals:
    """Totals from ``(status, jobs, tokens, cost, savings, seconds from creation to
    completion)`` rows, one per status."""
    counts: dict[str, int] = {}
    tokens, cost, savings, hours = 0, 0.0, 0.0, 0.0
    for status, n, tok, usd, saved, seconds in rows:
        counts[str(status)] = int(n)
        tokens += int(tok)
        cost += float(usd)
        savings += float(saved)
        if status == JobStatus.COMPLETED:
            hours = float(seconds) / 3600.0
    return JobTotals(counts=counts, tokens=tokens, cost_usd=cost, savings_usd=savings,
                     completed_hours=hours)


def cancellable(status: str) -> bool:
    """Whether a job in ``status`` can still be cancelled (pending, or flushed)."""
    return status in CANCELLABLE


def is_ready(status: str, run_after: float | None, *, now: float) -> bool:
    """The ready filter: a flush may take a job that is pending and whose ``run_after``
    has passed (or that has none). The queries that pick ready jobs (``take_ready_jobs``,
    ``ready_job_counts``) select exactly these; the store contract holds them to it."""
    return status == JobStatus.PENDING and (run_after is None or run_after <= now)


@dataclass(frozen=True, slots=True)
class ReadyCount:
    """A tenant's ready jobs: how many, and when the oldest was enqueued."""

    tenant_id: str
    count: int
    oldest: float


def flush_due(ready: ReadyCount, *, min_count: int, oldest_before: float | None) -> bool:
    """Whether an automatic flush takes the tenant's ready jobs now: there are
    ``min_count`` of them (0: never by count), or one was enqueued before
    ``oldest_before`` (None: never by age)."""
    return bool(min_count and ready.count >= min_count) or (
        oldest_before is not None and ready.oldest < oldest_before
    )


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """A job of a provider batch whose outcome a poll has not recorded yet."""

    custom_id: str
    pk: int
    status: str  # processing, or cancelled after the flush


@dataclass(frozen=True, slots=True)
class FinalOutcome:
    """A processing job's outcome, recorded as its end."""

    pk: int
    status: JobStatus
    outcome: JobOutcome
    completed_at: float


@dataclass(slots=True)
class OutcomePlan:
    """How a poll records outcomes: which jobs end, which keep only tokens and cost."""

    finals: list[FinalOutcome] = field(default_factory=list)
    tokens_only: list[tuple[int, JobOutcome]] = field(default_factory=list)  # (pk, outcome)

    @property
    def done(self) -> list[str]:
        """Custom ids of the jobs that end with this poll."""
        return [f.outcome.custom_id for f in self.finals]


def partition_outcomes(
    outcomes: Iterable[JobOutcome], unrecorded: Iterable[Unrecorded], *, now: float
) -> OutcomePlan:
    """The outcome partition: a processing job takes its outcome (status, result, tokens,
    cost); a job cancelled after the flush stays cancelled and takes only its tokens and
    cost, which were spent anyway. An outcome for a job already recorded (or not of the
    batch) is ignored, so a second poll records nothing twice."""
    waiting = {u.custom_id: u for u in unrecorded}
    plan = OutcomePlan()
    for o in outcomes:
        job = waiting.pop(o.custom_id, None)
        if job is None:
            continue
        if job.status == JobStatus.PROCESSING:
            plan.finals.append(FinalOutcome(pk=job.pk, status=JOB_STATUS_OF[o.kind], outcome=o,
                                            completed_at=o.finished_at or now))
        else:
            plan.tokens_only.append((job.pk, o))
    return plan


def expire_missing(waiting: Iterable[WaitingJob], have: Container[str]) -> list[JobOutcome]:
    """Once a provider batch ended, the outcome of each processing job it returned no
    result for: failed as expired (a job cancelled after the flush just stays so)."""
    return [
        JobOutcome(custom_id=w.custom_id, kind=ResultKind.EXPIRED,
                   error="the provider returned no result for this job")
        for w in waiting if w.custom_id not in have and w.status == JobStatus.PROCESSING
    ]
