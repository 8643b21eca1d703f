"""The AI job queue on SQLite (mixed into SqliteStore)."""

from __future__ import annotations

import sqlite3
from typing import Any

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
from batchd.store.sqlite.connection import SqliteConnections

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
READY = "status = 'pending' AND (run_after IS NULL OR run_after <= ?)"


def _job(r: sqlite3.Row | tuple[Any, ...]) -> Job:
    values = tuple(r)
    job = Job(*values[:18])
    job.payload, job.result = values[18], values[19]
    return job


def _select(full: bool) -> str:
    return Q_JOB.format(extra="j.payload, j.result" if full else "NULL, NULL")


def _owner(sql: str, args: list[Any], owner: str | None) -> str:
    if owner is None:
        return sql
    args.append(owner)
    return f"{sql} AND j.owner = ?"


class SqliteJobQueue(JobQueueStore):
    db: SqliteConnections

    async def enqueue_job(self, job: NewJob, *, now: float) -> tuple[Job, bool]:
        def run(conn: sqlite3.Connection) -> tuple[Job, bool]:
            if job.idempotency_key is not None:
                r = conn.execute(
                    f"{_select(False)} WHERE j.tenant_id = ? AND j.owner = ? "
                    "AND j.idempotency_key = ?",
                    (job.tenant_id, job.owner, job.idempotency_key),
                ).fetchone()
                if r is not None:
                    return _job(r), False
            pk = conn.execute(
                "INSERT INTO aibatch_jobs (id, tenant_id, owner, job_type, status, priority, "
                "custom_id, idempotency_key, run_after, payload, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?) RETURNING pk",
                (job.id, job.tenant_id, job.owner, job.job_type, job.priority, job.custom_id,
                 job.idempotency_key, job.run_after, job.payload, now, now),
            ).fetchone()[0]
            return jobs.fresh(job, pk=int(pk), now=now), True

        return await self.db.write(run)

    async def get_job(self, job_id: str, *, tenant_id: str, full: bool = False) -> Job | None:
        r = await self.db.read(
            lambda c: c.execute(
                f"{_select(full)} WHERE j.id = ? AND j.tenant_id = ?", (job_id, tenant_id)
            ).fetchone()
        )
        return _job(r) if r else None

    async def list_jobs(self, *, tenant_id: str, owner: str | None, limit: int) -> list[Job]:
        args: list[Any] = [tenant_id]
        sql = _owner(f"{_select(False)} WHERE j.tenant_id = ?", args, owner)
        args.append(limit)
        return await self.db.read(
            lambda c: [_job(r) for r in c.execute(f"{sql} ORDER BY j.pk DESC LIMIT ?", args)]
        )

    async def job_counts(self, *, tenant_id: str, owner: str | None) -> dict[str, int]:
        args: list[Any] = [tenant_id]
        sql = _owner("SELECT j.status, COUNT(*) FROM aibatch_jobs j WHERE j.tenant_id = ?",
                     args, owner)
        return await self.db.read(
            lambda c: {r[0]: int(r[1]) for r in c.execute(f"{sql} GROUP BY j.status", args)}
        )

    async def job_totals(self, *, tenant_id: str, owner: str | None) -> JobTotals:
        args: list[Any] = [tenant_id]
        sql = _owner(
            "SELECT j.status, COUNT(*), COALESCE(SUM(j.tokens_in + j.tokens_out), 0), "
            "COALESCE(SUM(j.cost_usd), 0), COALESCE(SUM(j.savings_usd), 0), "
            "COALESCE(SUM(j.completed_at - j.created_at), 0) "
            "FROM aibatch_jobs j WHERE j.tenant_id = ?", args, owner,
        )
        rows = await self.db.read(lambda c: c.execute(f"{sql} GROUP BY j.status", args).fetchall())
        return jobs.summarise(rows)

    async def cancel_job(
        self, job_id: str, *, tenant_id: str, now: float
    ) -> tuple[Job, str] | None:
        def run(conn: sqlite3.Connection) -> tuple[Job, str] | None:
            r = conn.execute(
                "SELECT status FROM aibatch_jobs WHERE id = ? AND tenant_id = ?",
                (job_id, tenant_id),
            ).fetchone()
            if r is None or r[0] not in (JobStatus.PENDING, JobStatus.PROCESSING):
                return None
            conn.execute(
                "UPDATE aibatch_jobs SET status = 'cancelled', updated_at = ? WHERE id = ?",
                (now, job_id),
            )
            job = conn.execute(f"{_select(False)} WHERE j.id = ?", (job_id,)).fetchone()
            return _job(job), str(r[0])

        return await self.db.write(run)

    async def take_jobs(
        self, *, tenant_id: str, pick: JobPick, provider: str, model: str | None, now: float
    ) -> tuple[QueueBatch, list[Job]] | None:
        where = f"tenant_id = ? AND {READY} AND priority >= ?"
        args: list[Any] = [tenant_id, now, pick.min_priority]
        if pick.job_types is not None:
            where += f" AND job_type IN ({','.join('?' * len(pick.job_types))})"
            args.extend(pick.job_types)

        def run(conn: sqlite3.Connection) -> tuple[QueueBatch, list[Job]] | None:
            batch_pk = conn.execute(
                "INSERT INTO aibatch_batches (tenant_id, provider, model, status, n_jobs, "
                "created_at) VALUES (?, ?, ?, 'submitting', 0, ?) RETURNING pk",
                (tenant_id, provider, model, now),
            ).fetchone()[0]
            n = conn.execute(
                "UPDATE aibatch_jobs SET status = 'processing', batch_pk = ?, updated_at = ? "
                f"WHERE pk IN (SELECT pk FROM aibatch_jobs WHERE {where} "
                "ORDER BY priority DESC, pk LIMIT ?)",
                (batch_pk, now, *args, pick.max_jobs),
            ).rowcount
            if n == 0:
                conn.execute("DELETE FROM aibatch_batches WHERE pk = ?", (batch_pk,))
                return None
            conn.execute("UPDATE aibatch_batches SET n_jobs = ? WHERE pk = ?", (n, batch_pk))
            jobs = [
                _job(r)
                for r in conn.execute(
                    f"{_select(True)} WHERE j.batch_pk = ? ORDER BY j.priority DESC, j.pk",
                    (batch_pk,),
                )
            ]
            batch = QueueBatch(
                pk=batch_pk, tenant_id=tenant_id, provider=provider, provider_batch_id=None,
                model=model, status=BatchState.SUBMITTING, n_jobs=n, created_at=now,
                ended_at=None,
            )
            return batch, jobs

        return await self.db.write(run)

    async def mark_submitted(self, batch_pk: int, provider_batch_id: str, *, now: float) -> bool:
        return await self.db.write(
            lambda c: c.execute(
                "UPDATE aibatch_batches SET provider_batch_id = ?, status = 'in_progress', "
                "submitted_at = ? WHERE pk = ? AND status = 'submitting'",
                (provider_batch_id, now, batch_pk),
            ).rowcount
            == 1
        )

    async def release_batch(self, batch_pk: int, *, now: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            n = conn.execute(
                "UPDATE aibatch_jobs SET status = 'pending', batch_pk = NULL, updated_at = ? "
                "WHERE batch_pk = ? AND status = 'processing'",
                (now, batch_pk),
            ).rowcount
            conn.execute("UPDATE aibatch_jobs SET batch_pk = NULL WHERE batch_pk = ?", (batch_pk,))
            conn.execute("DELETE FROM aibatch_batches WHERE pk = ?", (batch_pk,))
            return int(n)

        return await self.db.write(run)

    async def stale_submissions(self, *, created_before: float) -> list[int]:
        return await self.db.read(
            lambda c: [
                int(r[0])
                for r in c.execute(
                    "SELECT pk FROM aibatch_batches WHERE status = 'submitting' "
                    "AND created_at < ?",
                    (created_before,),
                )
            ]
        )

    async def queue_batch(self, provider_batch_id: str, *, tenant_id: str) -> QueueBatch | None:
        r = await self.db.read(
            lambda c: c.execute(
                f"SELECT {BATCH_COLUMNS} FROM aibatch_batches "
                "WHERE provider_batch_id = ? AND tenant_id = ?",
                (provider_batch_id, tenant_id),
            ).fetchone()
        )
        return QueueBatch(*r) if r else None

    async def open_queue_batches(self, *, limit: int) -> list[QueueBatch]:
        return await self.db.read(
            lambda c: [
                QueueBatch(*r)
                for r in c.execute(
                    f"SELECT {BATCH_COLUMNS} FROM aibatch_batches "
                    "WHERE status = 'in_progress' ORDER BY pk LIMIT ?",
                    (limit,),
                )
            ]
        )

    async def waiting_jobs(self, batch_pk: int) -> list[WaitingJob]:
        return await self.db.read(
            lambda c: [
                WaitingJob(*r)
                for r in c.execute(
                    "SELECT custom_id, id, job_type, status FROM aibatch_jobs "
                    "WHERE batch_pk = ? AND polled_at IS NULL "
                    "AND status IN ('processing', 'cancelled')",
                    (batch_pk,),
                )
            ]
        )

    async def record_outcomes(
        self, batch_pk: int, outcomes: list[JobOutcome], *, ended: bool, now: float
    ) -> tuple[list[str], int]:
        return await self.db.write(_record, batch_pk, outcomes, ended, now)

    async def ready_tenants(
        self, *, now: float, min_count: int, oldest_before: float | None
    ) -> list[str]:
        rows = await self.db.read(
            lambda c: c.execute(
                f"SELECT tenant_id, COUNT(*), MIN(created_at) FROM aibatch_jobs WHERE {READY} "
                "GROUP BY tenant_id",
                (now,),
            ).fetchall()
        )
        return [
            str(t) for t, n, oldest in rows
            if (min_count and n >= min_count)
            or (oldest_before is not None and oldest < oldest_before)
        ]


def _record(
    conn: sqlite3.Connection, batch_pk: int, outcomes: list[JobOutcome], ended: bool, now: float
) -> tuple[list[str], int]:
    waiting = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT custom_id, pk, status FROM aibatch_jobs WHERE batch_pk = ? "
            "AND polled_at IS NULL AND status IN ('processing', 'cancelled')",
            (batch_pk,),
        )
    }
    finals, tokens_only, done = [], [], []
    for o in outcomes:
        found = waiting.pop(o.custom_id, None)
        if found is None:
            continue
        pk, status = found
        if status == JobStatus.PROCESSING:
            finals.append(_final_row(o, pk, now))
            done.append(o.custom_id)
        else:
            tokens_only.append((o.tokens_in, o.tokens_out, o.cost_usd, o.savings_usd, now, pk))
    conn.executemany(
        "UPDATE aibatch_jobs SET status = ?, result = ?, error_message = ?, tokens_in = ?, "
        "tokens_out = ?, cost_usd = ?, savings_usd = ?, completed_at = ?, polled_at = ?, "
        "updated_at = ? WHERE pk = ? AND status = 'processing'",
        finals,
    )
    conn.executemany(
        "UPDATE aibatch_jobs SET tokens_in = ?, tokens_out = ?, cost_usd = ?, savings_usd = ?, "
        "polled_at = ? WHERE pk = ?",
        tokens_only,
    )
    if ended:
        conn.execute(
            "UPDATE aibatch_batches SET status = 'ended', ended_at = ? WHERE pk = ?",
            (now, batch_pk),
        )
    remaining = conn.execute(
        "SELECT COUNT(*) FROM aibatch_jobs WHERE batch_pk = ? AND status = 'processing'",
        (batch_pk,),
    ).fetchone()[0]
    return done, int(remaining)


def _final_row(o: JobOutcome, pk: int, now: float) -> tuple[Any, ...]:
    return (
        JOB_STATUS_OF[o.kind].value, o.result, o.error, o.tokens_in, o.tokens_out, o.cost_usd,
        o.savings_usd, o.finished_at or now, now, now, pk,
    )
