"""The AI job queue on PostgreSQL (mixed into PostgresStore).

A flush takes its jobs with ``FOR UPDATE SKIP LOCKED``, so several servers can flush
one tenant's queue at once without taking a job twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from batchd.core import jobs
from batchd.core.jobs import (
    JOB_STATUS_OF,
    BatchState,
    Job,
    JobOutcome,
    JobPick,
    JobStatus,
    JobTotals,
    NewJob,
    QueueBatch,
    WaitingJob,
)
from batchd.store.jobqueue import JobQueueStore
from batchd.store.postgres.execution import Conn

T = TypeVar("T")
JOB_COLUMNS = (
    "j.pk, j.id, j.tenant_id, j.owner, j.job_type, j.status, j.priority, j.custom_id, "
    "b.provider_batch_id, j.created_at, j.updated_at, j.run_after, j.completed_at, "
    "j.tokens_in, j.tokens_out, j.cost_usd, j.savings_usd, j.error_message"
)
Q_JOB = (
    f"SELECT {JOB_COLUMNS}, {{extra}} FROM aibatch_jobs j "
    "LEFT JOIN aibatch_batches b ON b.pk = j.batch_pk"
)
BATCH_COLUMNS = (
    "pk, tenant_id, provider, provider_batch_id, model, status, n_jobs, created_at, ended_at"
)
READY = "status = 'pending' AND (run_after IS NULL OR run_after <= %s)"


def _job(r: tuple[Any, ...]) -> Job:
    job = Job(*r[:18])
    job.payload = bytes(r[18]) if r[18] is not None else None
    job.result = bytes(r[19]) if r[19] is not None else None
    return job


def _select(full: bool) -> str:
    return Q_JOB.format(extra="j.payload, j.result" if full else "NULL, NULL")


def _owner(sql: str, args: list[Any], owner: str | None) -> str:
    if owner is None:
        return sql
    args.append(owner)
    return f"{sql} AND j.owner = %s"


class PostgresJobQueue(JobQueueStore):
    if TYPE_CHECKING:
        async def _tx(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T: ...

        async def _read(self, sql: str, args: Any = ()) -> list[tuple[Any, ...]]: ...

    async def enqueue_job(self, job: NewJob, *, now: float) -> tuple[Job, bool]:
        async def run(conn: Conn) -> tuple[Job, bool]:
            cur = await conn.execute(
                "INSERT INTO aibatch_jobs (id, tenant_id, owner, job_type, status, priority, "
                "custom_id, idempotency_key, run_after, payload, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (tenant_id, owner, idempotency_key) "
                "WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING pk",
                (job.id, job.tenant_id, job.owner, job.job_type, job.priority, job.custom_id,
                 job.idempotency_key, job.run_after, job.payload, now, now),
            )
            row = await cur.fetchone()
            if row is not None:
                return jobs.fresh(job, pk=int(row[0]), now=now), True
            cur = await conn.execute(
                f"{_select(False)} WHERE j.tenant_id = %s AND j.owner = %s "
                "AND j.idempotency_key = %s",
                (job.tenant_id, job.owner, job.idempotency_key),
            )
            existing = await cur.fetchone()
            assert existing is not None  # the conflict is on this very key
            return _job(existing), False

        return await self._tx(run)

    async def get_job(self, job_id: str, *, tenant_id: str, full: bool = False) -> Job | None:
        rows = await self._read(
            f"{_select(full)} WHERE j.id = %s AND j.tenant_id = %s", (job_id, tenant_id)
        )
        return _job(rows[0]) if rows else None

    async def list_jobs(self, *, tenant_id: str, owner: str | None, limit: int) -> list[Job]:
        args: list[Any] = [tenant_id]
        sql = _owner(f"{_select(False)} WHERE j.tenant_id = %s", args, owner)
        rows = await self._read(f"{sql} ORDER BY j.pk DESC LIMIT %s", (*args, limit))
        return [_job(r) for r in rows]

    async def job_counts(self, *, tenant_id: str, owner: str | None) -> dict[str, int]:
        args: list[Any] = [tenant_id]
        sql = _owner("SELECT j.status, COUNT(*) FROM aibatch_jobs j WHERE j.tenant_id = %s",
                     args, owner)
        return {r[0]: int(r[1]) for r in await self._read(f"{sql} GROUP BY j.status", args)}

    async def job_totals(self, *, tenant_id: str, owner: str | None) -> JobTotals:
        args: list[Any] = [tenant_id]
        sql = _owner(
            "SELECT j.status, COUNT(*), COALESCE(SUM(j.tokens_in + j.tokens_out), 0), "
            "COALESCE(SUM(j.cost_usd), 0), COALESCE(SUM(j.savings_usd), 0), "
            "COALESCE(SUM(j.completed_at - j.created_at), 0) "
            "FROM aibatch_jobs j WHERE j.tenant_id = %s", args, owner,
        )
        return jobs.summarise(await self._read(f"{sql} GROUP BY j.status", args))

    async def cancel_job(
        self, job_id: str, *, tenant_id: str, now: float
    ) -> tuple[Job, str] | None:
        async def run(conn: Conn) -> tuple[Job, str] | None:
            cur = await conn.execute(
                "SELECT status FROM aibatch_jobs WHERE id = %s AND tenant_id = %s FOR UPDATE",
                (job_id, tenant_id),
            )
            r = await cur.fetchone()
            if r is None or r[0] not in (JobStatus.PENDING, JobStatus.PROCESSING):
                return None
            await conn.execute(
                "UPDATE aibatch_jobs SET status = 'cancelled', updated_at = %s WHERE id = %s",
                (now, job_id),
            )
            cur = await conn.execute(f"{_select(False)} WHERE j.id = %s", (job_id,))
            job = await cur.fetchone()
            assert job is not None
            return _job(job), str(r[0])

        return await self._tx(run)

    async def take_jobs(
        self, *, tenant_id: str, pick: JobPick, provider: str, model: str | None, now: float
    ) -> tuple[QueueBatch, list[Job]] | None:
        where = f"tenant_id = %s AND {READY} AND priority >= %s"
        args: list[Any] = [tenant_id, now, pick.min_priority]
        if pick.job_types is not None:
            where += " AND job_type = ANY(%s)"
            args.append(list(pick.job_types))

        async def run(conn: Conn) -> tuple[QueueBatch, list[Job]] | None:
            cur = await conn.execute(
                "INSERT INTO aibatch_batches (tenant_id, provider, model, status, n_jobs, "
                "created_at) VALUES (%s, %s, %s, 'submitting', 0, %s) RETURNING pk",
                (tenant_id, provider, model, now),
            )
            batch_pk = int((await cur.fetchone())[0])  # type: ignore[index]
            cur = await conn.execute(
                f"WITH picked AS (SELECT pk FROM aibatch_jobs WHERE {where} "  # type: ignore[arg-type]
                "ORDER BY priority DESC, pk LIMIT %s FOR UPDATE SKIP LOCKED) "
                "UPDATE aibatch_jobs j SET status = 'processing', batch_pk = %s, updated_at = %s "
                "FROM picked WHERE j.pk = picked.pk",
                (*args, pick.max_jobs, batch_pk, now),
            )
            n = cur.rowcount
            if n <= 0:
                await conn.execute("DELETE FROM aibatch_batches WHERE pk = %s", (batch_pk,))
                return None
            await conn.execute(
                "UPDATE aibatch_batches SET n_jobs = %s WHERE pk = %s", (n, batch_pk)
            )
            cur = await conn.execute(
                f"{_select(True)} WHERE j.batch_pk = %s ORDER BY j.priority DESC, j.pk",  # type: ignore[arg-type]
                (batch_pk,),
            )
            taken = [_job(r) for r in await cur.fetchall()]
            batch = QueueBatch(
                pk=batch_pk, tenant_id=tenant_id, provider=provider, provider_batch_id=None,
                model=model, status=BatchState.SUBMITTING, n_jobs=n, created_at=now,
                ended_at=None,
            )
            return batch, taken

        return await self._tx(run)

    async def mark_submitted(self, batch_pk: int, provider_batch_id: str, *, now: float) -> bool:
        async def run(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE aibatch_batches SET provider_batch_id = %s, status = 'in_progress', "
                "submitted_at = %s WHERE pk = %s AND status = 'submitting'",
                (provider_batch_id, now, batch_pk),
            )
            return cur.rowcount == 1

        return await self._tx(run)

    async def release_batch(self, batch_pk: int, *, now: float) -> int:
        async def run(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE aibatch_jobs SET status = 'pending', batch_pk = NULL, updated_at = %s "
                "WHERE batch_pk = %s AND status = 'processing'",
                (now, batch_pk),
            )
            n = cur.rowcount
            await conn.execute(
                "UPDATE aibatch_jobs SET batch_pk = NULL WHERE batch_pk = %s", (batch_pk,)
            )
            await conn.execute("DELETE FROM aibatch_batches WHERE pk = %s", (batch_pk,))
            return max(0, n)

        return await self._tx(run)

    async def stale_submissions(self, *, created_before: float) -> list[int]:
        rows = await self._read(
            "SELECT pk FROM aibatch_batches WHERE status = 'submitting' AND created_at < %s",
            (created_before,),
        )
        return [int(r[0]) for r in rows]

    async def queue_batch(self, provider_batch_id: str, *, tenant_id: str) -> QueueBatch | None:
        rows = await self._read(
            f"SELECT {BATCH_COLUMNS} FROM aibatch_batches "
            "WHERE provider_batch_id = %s AND tenant_id = %s",
            (provider_batch_id, tenant_id),
        )
        return QueueBatch(*rows[0]) if rows else None

    async def open_queue_batches(self, *, limit: int) -> list[QueueBatch]:
        rows = await self._read(
            f"SELECT {BATCH_COLUMNS} FROM aibatch_batches WHERE status = 'in_progress' "
            "ORDER BY pk LIMIT %s",
            (limit,),
        )
        return [QueueBatch(*r) for r in rows]

    async def waiting_jobs(self, batch_pk: int) -> list[WaitingJob]:
        rows = await self._read(
            "SELECT custom_id, id, job_type, status FROM aibatch_jobs WHERE batch_pk = %s "
            "AND polled_at IS NULL AND status IN ('processing', 'cancelled')",
            (batch_pk,),
        )
        return [WaitingJob(*r) for r in rows]

    async def record_outcomes(
        self, batch_pk: int, outcomes: list[JobOutcome], *, ended: bool, now: float
    ) -> tuple[list[str], int]:
        return await self._tx(_record, batch_pk, outcomes, ended, now)

    async def ready_tenants(
        self, *, now: float, min_count: int, oldest_before: float | None
    ) -> list[str]:
        rows = await self._read(
            f"SELECT tenant_id, COUNT(*), MIN(created_at) FROM aibatch_jobs WHERE {READY} "
            "GROUP BY tenant_id",
            (now,),
        )
        return [
            str(t) for t, n, oldest in rows
            if (min_count and n >= min_count)
            or (oldest_before is not None and oldest < oldest_before)
        ]


async def _record(
    conn: Conn, batch_pk: int, outcomes: list[JobOutcome], ended: bool, now: float
) -> tuple[list[str], int]:
    # Row locks in pk order, as every other writer of these rows takes them.
    cur = await conn.execute(
        "SELECT custom_id, pk, status FROM aibatch_jobs WHERE batch_pk = %s "
        "AND polled_at IS NULL AND status IN ('processing', 'cancelled') ORDER BY pk FOR UPDATE",
        (batch_pk,),
    )
    waiting = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
    finals, tokens_only, done = [], [], []
    for o in outcomes:
        found = waiting.pop(o.custom_id, None)
        if found is None:
            continue
        pk, status = found
        if status == JobStatus.PROCESSING:
            finals.append((
                JOB_STATUS_OF[o.kind].value, o.result, o.error, o.tokens_in, o.tokens_out,
                o.cost_usd, o.savings_usd, o.finished_at or now, now, now, pk,
            ))
            done.append(o.custom_id)
        else:
            tokens_only.append((o.tokens_in, o.tokens_out, o.cost_usd, o.savings_usd, now, pk))
    async with conn.cursor() as c:
        if finals:
            await c.executemany(
                "UPDATE aibatch_jobs SET status = %s, result = %s, error_message = %s, "
                "tokens_in = %s, tokens_out = %s, cost_usd = %s, savings_usd = %s, "
                "completed_at = %s, polled_at = %s, updated_at = %s "
                "WHERE pk = %s AND status = 'processing'",
                finals,
            )
        if tokens_only:
            await c.executemany(
                "UPDATE aibatch_jobs SET tokens_in = %s, tokens_out = %s, cost_usd = %s, "
                "savings_usd = %s, polled_at = %s WHERE pk = %s",
                tokens_only,
            )
    if ended:
        await conn.execute(
            "UPDATE aibatch_batches SET status = 'ended', ended_at = %s WHERE pk = %s",
            (now, batch_pk),
        )
    cur = await conn.execute(
        "SELECT COUNT(*) FROM aibatch_jobs WHERE batch_pk = %s AND status = 'processing'",
        (batch_pk,),
    )
    return done, int((await cur.fetchone())[0])  # type: ignore[index]
