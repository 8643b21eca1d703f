"""JobQueue: the AI job queue's business operations, over the database and providers.

Enqueue, read and cancel jobs; flush ready jobs into one provider batch; poll a
provider batch and record each job's outcome, tokens, cost and savings.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from batchd.core.jobs import (
    CANCELLABLE,
    BatchState,
    Job,
    JobOutcome,
    JobPick,
    JobStatus,
    JobTotals,
    NewJob,
    WaitingJob,
    expire_missing,
)
from batchd.core.providers import BatchProgress, JobRequest, Provider, ProviderResult
from batchd.core.txn.jobqueue import JobQueueOps
from batchd.domain import codec, errors, pricing
from batchd.domain.models import Principal
from batchd.tasks.dispatch import AIBATCH, SIMULATION
from batchd.tasks.registry import TaskRegistry

log = logging.getLogger(__name__)
INTERNAL_TASKS = frozenset({AIBATCH, SIMULATION})  # dispatchers: not job types


@dataclass(slots=True)
class Flushed:
    batch_id: str
    provider: str
    jobs_count: int
    estimated_tokens: int


@dataclass(slots=True)
class Polled:
    batch_id: str
    progress: str
    results: list[tuple[JobOutcome, WaitingJob]]
    remaining: int


class JobQueue:
    """Business operations of the AI job queue.

    Args:
        store: where jobs and provider batches live (the engine's
            :class:`~batchd.core.db.Database`).
        registry: the tasks, which are the job types.
        providers: a provider by name (None: the default one).
        prices: the price table (see :mod:`batchd.domain.pricing`).
        submit_timeout_s: a flush whose provider never answered is undone after this.
    """

    def __init__(
        self, *, store: JobQueueOps, registry: TaskRegistry,
        providers: Callable[[str | None], Provider], prices: Mapping[str, pricing.Price],
        clock: Callable[[], float] = time.time, submit_timeout_s: float = 600.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.providers = providers
        self.prices = dict(prices)
        self.clock = clock
        self.submit_timeout_s = submit_timeout_s

    # jobs
    def job_types(self) -> list[str]:
        return [n for n in self.registry.names() if n not in INTERNAL_TASKS]

    def check_job_type(self, job_type: str, loc: list[str | int]) -> None:
        """Raises InvalidInput in pydantic's enum shape unless ``job_type`` is a task."""
        if job_type in INTERNAL_TASKS or job_type not in self.registry.names():
            names = [repr(n) for n in self.job_types()]
            expected = " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else (
                names[0] if names else "a registered task")
            raise errors.InvalidInput(
                f"unknown job type {job_type!r}",
                details=[{"type": "enum", "loc": loc, "msg": f"Input should be {expected}",
                          "input": job_type, "ctx": {"expected": expected}}],
            )

    async def enqueue(
        self, principal: Principal, *, job_type: str, payload: Any, priority: int,
        run_after: float | None, idempotency_key: str | None,
    ) -> tuple[Job, bool]:
        """Queue a job until a flush takes it; a replayed idempotency key returns the job
        made first (the flag says whether this call created it)."""
        self.check_job_type(job_type, ["body", "job_type"])
        problem = self.registry.get(job_type).input_errors(payload)
        if problem:
            raise errors.InvalidInput(
                f"payload: {problem}",
                details=[{"type": "value_error", "loc": ["body", "payload"], "msg": problem,
                          "input": payload}],
            )
        job_id = _job_id()
        new = NewJob(
            id=job_id, tenant_id=principal.tenant_id, owner=principal.owner, job_type=job_type,
            payload=codec.dumps(payload), priority=priority, run_after=run_after,
            idempotency_key=idempotency_key, custom_id=job_id,
        )
        return await self.store.enqueue_job(new, now=self.clock())

    async def get(self, principal: Principal, job_id: str, *, full: bool = False) -> Job:
        job = await self.store.get_job(job_id, tenant_id=principal.tenant_id, full=full)
        if job is None or not (principal.sees_all_of_tenant or job.owner == principal.owner):
            raise errors.NotFound(
                f"job {job_id} not found",
                details=[{"type": "not_found", "loc": ["path", "job_id"],
                          "msg": f"job {job_id} not found", "input": job_id}],
            )
        return job

    async def list(self, principal: Principal, *, limit: int) -> tuple[list[Job], dict[str, int]]:
        owner = None if principal.sees_all_of_tenant else principal.owner
        jobs = await self.store.list_jobs(tenant_id=principal.tenant_id, owner=owner, limit=limit)
        counts = await self.store.job_counts(tenant_id=principal.tenant_id, owner=owner)
        return jobs, counts

    async def totals(self, principal: Principal) -> JobTotals:
        owner = None if principal.sees_all_of_tenant else principal.owner
        return await self.store.job_totals(tenant_id=principal.tenant_id, owner=owner)

    async def result(self, principal: Principal, job_id: str) -> bytes:
        """A completed job's result, as the JSON text it is stored as; raises Conflict for
        a job without one."""
        job = await self.get(principal, job_id, full=True)
        if job.status == JobStatus.COMPLETED:
            return bytes(job.result) if job.result is not None else b"{}"
        why = f": {job.error_message}" if job.error_message else ""
        raise errors.Conflict(
            f"job {job_id} is {job.status} and has no result{why}",
            details=[{"type": "job_not_completed", "loc": ["path", "job_id"],
                      "msg": f"job is {job.status} and has no result{why}", "input": job_id}],
        )

    async def cancel(self, principal: Principal, job_id: str) -> Job:
        """Cancel a pending job, or a flushed one (its result is then not kept; a provider
        batch left with no job to run is cancelled too). Cancelling twice is fine."""
        job = await self.get(principal, job_id)
        done = await self.store.cancel_job(job_id, tenant_id=principal.tenant_id,
                                           now=self.clock())
        if done is None:
            job = await self.get(principal, job_id)
            if job.status == JobStatus.CANCELLED:
                return job
            raise errors.Conflict(
                f"job {job_id} is {job.status} and can no longer be cancelled",
                details=[{"type": "job_finished", "loc": ["path", "job_id"],
                          "msg": f"job is {job.status} and can no longer be cancelled",
                          "input": job_id}],
            )
        job, was = done
        if was == JobStatus.PROCESSING and job.batch_id is not None:
            await self._cancel_if_idle(principal.tenant_id, job.batch_id)
        return job

    async def _cancel_if_idle(self, tenant_id: str, batch_id: str) -> None:
        batch = await self.store.queue_batch(batch_id, tenant_id=tenant_id)
        if batch is None or batch.status != BatchState.IN_PROGRESS:
            return
        waiting = await self.store.waiting_jobs(batch.pk)
        if any(w.status == JobStatus.PROCESSING for w in waiting):
            return
        try:
            await self.providers(batch.provider).cancel(batch_id)
        except errors.BatchdError as exc:  # the jobs are cancelled either way
            log.warning("could not cancel provider batch %s: %s", batch_id, exc.message)

    # provider batches
    async def flush(
        self, tenant_id: str, pick: JobPick, *, provider: str | None = None
    ) -> Flushed | None:
        """Send the ready jobs ``pick`` selects to one provider batch; None if none is
        ready. If the provider refuses, the jobs are pending again and ProviderError
        raised."""
        await self.release_stale()
        chosen = self.providers(provider)
        taken = await self.store.take_jobs(
            tenant_id=tenant_id, pick=pick, provider=chosen.name, model=chosen.model,
            now=self.clock(),
        )
        if taken is None:
            return None
        batch, jobs = taken
        requests = [
            JobRequest(custom_id=j.custom_id, job_type=j.job_type,
                       payload=orjson.loads(j.payload or b"{}"), priority=j.priority)
            for j in jobs
        ]
        try:
            batch_id = await chosen.submit(tenant_id=tenant_id, requests=requests)
        except BaseException:
            await asyncio.shield(self.store.release_batch(batch.pk, now=self.clock()))
            raise
        if not await self.store.mark_submitted(batch.pk, batch_id, now=self.clock()):
            # Taken back as stale meanwhile: its jobs may be in another batch by now.
            await self._cancel_quietly(chosen, batch_id)
            raise errors.Conflict("the provider answered too late; the jobs were requeued")
        return Flushed(batch_id=batch_id, provider=chosen.name, jobs_count=len(jobs),
                       estimated_tokens=chosen.estimate_tokens(requests))

    async def release_stale(self) -> int:
        """Requeue the jobs of flushes whose provider never answered (a crash mid-flush)."""
        released = 0
        cutoff = self.clock() - self.submit_timeout_s
        for pk in await self.store.stale_submissions(created_before=cutoff):
            released += await self.store.release_batch(pk, now=self.clock())
        return released

    async def poll(self, tenant_id: str, batch_id: str) -> Polled:
        """Fetch a provider batch's results and record them; raises NotFound for a batch
        this tenant did not flush."""
        batch = await self.store.queue_batch(batch_id, tenant_id=tenant_id)
        if batch is None:
            raise errors.NotFound(
                f"batch {batch_id} not found",
                details=[{"type": "not_found", "loc": ["body", "batch_id"],
                          "msg": f"batch {batch_id} not found", "input": batch_id}],
            )
        if batch.status == BatchState.ENDED:
            return Polled(batch_id=batch_id, progress=BatchProgress.ENDED, results=[],
                          remaining=0)
        provider = self.providers(batch.provider)
        waiting = {w.custom_id: w for w in await self.store.waiting_jobs(batch.pk)}
        fetched = await provider.fetch(batch_id, waiting=set(waiting))
        ended = fetched.progress == BatchProgress.ENDED
        outcomes = {
            r.custom_id: self._priced(r, provider)
            for r in fetched.results if r.custom_id in waiting
        }
        if ended:
            outcomes.update((o.custom_id, o) for o in expire_missing(waiting.values(), outcomes))
        done, remaining = await self.store.record_outcomes(
            batch.pk, list(outcomes.values()), ended=ended, now=self.clock()
        )
        results = [(outcomes[c], waiting[c]) for c in done]
        return Polled(batch_id=batch_id, progress=fetched.progress, results=results,
                      remaining=remaining)

    def _priced(self, r: ProviderResult, provider: Provider) -> JobOutcome:
        price = pricing.price_of(self.prices, r.model or provider.model)
        cost, savings = pricing.charge(price, tokens_in=r.tokens_in, tokens_out=r.tokens_out,
                                       reported_usd=r.reported_usd)
        return JobOutcome(
            custom_id=r.custom_id, kind=r.kind,
            result=codec.dumps(r.output) if r.output is not None else None, error=r.error,
            tokens_in=r.tokens_in, tokens_out=r.tokens_out, cost_usd=cost,
            savings_usd=savings, processing_ms=r.processing_ms, finished_at=r.finished_at,
        )

    @staticmethod
    async def _cancel_quietly(provider: Provider, batch_id: str) -> None:
        try:
            await provider.cancel(batch_id)
        except errors.BatchdError as exc:
            log.warning("could not cancel provider batch %s: %s", batch_id, exc.message)

    # automatic flush and poll
    async def auto_flush(self, *, min_count: int, max_age_s: float, max_jobs: int) -> int:
        """Flush every tenant with ``min_count`` ready jobs, or one older than
        ``max_age_s`` (0 turns either off); returns how many jobs were flushed."""
        now = self.clock()
        tenants = await self.store.ready_tenants(
            now=now, min_count=min_count, oldest_before=now - max_age_s if max_age_s else None
        )
        flushed = 0
        for tenant_id in tenants:
            try:
                done = await self.flush(tenant_id, JobPick(max_jobs=max_jobs))
            except errors.BatchdError as exc:
                log.warning("auto-flush of tenant %s failed: %s", tenant_id, exc.message)
                continue
            flushed += done.jobs_count if done else 0
        return flushed

    async def poll_open(self, *, limit: int = 100) -> int:
        """Poll every unfinished provider batch once; returns how many jobs ended."""
        ended = 0
        for batch in await self.store.open_queue_batches(limit=limit):
            if batch.provider_batch_id is None:
                continue
            try:
                polled = await self.poll(batch.tenant_id, batch.provider_batch_id)
            except errors.BatchdError as exc:
                log.warning("auto-poll of %s failed: %s", batch.provider_batch_id, exc.message)
                continue
            ended += len(polled.results)
        return ended


def _job_id() -> str:
    # 96 random bits, like models.new_id, but from the process's seeded generator: a job
    # id names, it guards nothing (reads are scoped by tenant and owner), and urandom
    # costs a system call per enqueue.
    return f"job_{random.getrandbits(96):024x}"


__all__ = ["CANCELLABLE", "Flushed", "JobQueue", "Polled"]
