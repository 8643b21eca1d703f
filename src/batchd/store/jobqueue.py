"""The storage interface of the AI job queue (both backends implement it beside Store).

Jobs wait in a table of their own until a flush takes them: a flush is one
transaction that picks the ready jobs (``run_after`` passed), highest priority first,
marks them ``processing`` and records a provider batch in state ``submitting``; the
provider's batch id is recorded once the provider accepted the batch. A poll records
outcomes with guarded updates, so concurrent polls record each job once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from batchd.core.jobs import (
    Job,
    JobOutcome,
    JobPick,
    JobTotals,
    NewJob,
    QueueBatch,
    WaitingJob,
)


class JobQueueStore(ABC):
    """Durable state of queued jobs and the provider batches they were flushed into."""

    @abstractmethod
    async def enqueue_job(self, job: NewJob, *, now: float) -> tuple[Job, bool]:
        """Insert ``job``, or return the job the same owner enqueued earlier with the same
        ``idempotency_key``; the flag says whether the job is new."""

    @abstractmethod
    async def get_job(self, job_id: str, *, tenant_id: str, full: bool = False) -> Job | None:
        """The job, with its payload and result when ``full``."""

    @abstractmethod
    async def list_jobs(self, *, tenant_id: str, owner: str | None, limit: int) -> list[Job]:
        """The newest jobs first (``owner`` None: the whole tenant's)."""

    @abstractmethod
    async def job_counts(self, *, tenant_id: str, owner: str | None) -> dict[str, int]:
        """How many jobs are in each status."""

    @abstractmethod
    async def job_totals(self, *, tenant_id: str, owner: str | None) -> JobTotals: ...

    @abstractmethod
    async def cancel_job(
        self, job_id: str, *, tenant_id: str, now: float
    ) -> tuple[Job, str] | None:
        """Cancel a pending or processing job; returns it and the status it had, or None
        when it was in neither (the caller reads it again to say why)."""

    @abstractmethod
    async def take_jobs(
        self, *, tenant_id: str, pick: JobPick, provider: str, model: str | None, now: float
    ) -> tuple[QueueBatch, list[Job]] | None:
        """Move the jobs ``pick`` selects to ``processing`` in a new provider batch
        (``submitting``); their payloads are included. None when no job is ready."""

    @abstractmethod
    async def mark_submitted(self, batch_pk: int, provider_batch_id: str, *, now: float) -> bool:
        """Record the provider's id of a submitted batch; False if it was released."""

    @abstractmethod
    async def release_batch(self, batch_pk: int, *, now: float) -> int:
        """Return a batch's processing jobs to ``pending`` and forget the batch (the
        provider refused it); returns how many jobs went back."""

    @abstractmethod
    async def stale_submissions(self, *, created_before: float) -> list[int]:
        """Batches still ``submitting`` that were created before ``created_before``."""

    @abstractmethod
    async def queue_batch(self, provider_batch_id: str, *, tenant_id: str) -> QueueBatch | None:
        ...

    @abstractmethod
    async def open_queue_batches(self, *, limit: int) -> list[QueueBatch]:
        """Submitted batches not yet ended, over every tenant, oldest first."""

    @abstractmethod
    async def waiting_jobs(self, batch_pk: int) -> list[WaitingJob]:
        """Jobs of the batch whose outcome was not recorded yet (processing, or cancelled
        after the flush: their tokens are still recorded when the result arrives)."""

    @abstractmethod
    async def record_outcomes(
        self, batch_pk: int, outcomes: list[JobOutcome], *, ended: bool, now: float
    ) -> tuple[list[str], int]:
        """Record outcomes in one transaction; a processing job takes its outcome, a job
        cancelled after the flush only its tokens and cost. With ``ended`` the batch is
        marked ended. Returns the custom ids of the jobs that ended now, and how many
        jobs of the batch are still processing."""

    @abstractmethod
    async def ready_tenants(
        self, *, now: float, min_count: int, oldest_before: float | None
    ) -> list[str]:
        """Tenants with at least ``min_count`` ready jobs (0: ignored), or with a ready job
        created before ``oldest_before`` (None: ignored)."""


def job_queue_store(store: object) -> JobQueueStore:
    """``store`` as the job queue's store (both backends are); TypeError otherwise."""
    store = getattr(store, "store", store)  # a core Database: its backend
    if not isinstance(store, JobQueueStore):
        raise TypeError(f"{type(store).__name__} does not keep the AI job queue")
    return store
