"""The PostgreSQL store: many servers and workers on one database.

psycopg 3 (async) with a connection pool; claims with ``FOR UPDATE SKIP LOCKED``;
bulk ingest with ``COPY``; group commit of outcomes; ``LISTEN/NOTIFY`` wakes idle
workers when new items are committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from batchd.core.quotas import Metering, input_buffer_full
from batchd.core.scheduling import claim_plan
from batchd.domain import errors
from batchd.domain.models import (
    Batch,
    BatchSpec,
    ClaimedItem,
    Item,
    Outcome,
)
from batchd.domain.states import BatchStatus
from batchd.store import queries
from batchd.store.base import (
    BatchQuery,
    BatchTotals,
    ExportPage,
    ExportRow,
    StagedItem,
    Store,
)
from batchd.store.postgres import execution as ex
from batchd.store.postgres import listing
from batchd.store.postgres import usage as metering_
from batchd.store.postgres.connection import PgConnections
from batchd.store.postgres.jobqueue import PostgresJobQueue
from batchd.store.postgres.scripts import run_script
from batchd.store.postgres.taskdefs import PostgresTaskDefs
from batchd.store.postgres.webhooks import PostgresWebhooks
from batchd.store.script import Script

log = logging.getLogger(__name__)
T = TypeVar("T")
Conn = ex.Conn
CHANNEL = "batchd_work"
MIGRATION_LOCK = 0x62617463  # advisory lock id: one migrator at a time
REAP_LOCK = 0x72656170  # one reaper at a time across all workers

BATCH_COLUMNS = [f for f in Batch.__dataclass_fields__]
Q_BATCH = f"SELECT {', '.join(BATCH_COLUMNS)} FROM batches"
ITEM_COLUMNS = (
    "i.id, i.seq, i.rec0, i.n_records, i.status, i.attempts, d.data, o.data, i.error, i.usage, "
    "i.started_at, i.finished_at, i.runner"
)
Q_ITEM = (
    f"SELECT {ITEM_COLUMNS} FROM items i JOIN item_inputs d ON d.id = i.id "
    "LEFT JOIN item_outputs o ON o.id = i.id"
)
# A page of the bulk export, assembled by the database in one row.
Q_EXPORT_PAGE = """
SELECT count(*), max(s.seq), json_agg(s.id ORDER BY s.seq)::text,
       json_agg(s.runner ORDER BY s.seq)::text,
       '['::bytea || string_agg(s.din, ','::bytea ORDER BY s.seq) || ']'::bytea,
       json_agg(length(s.din) ORDER BY s.seq)::text,
       '['::bytea || string_agg(COALESCE(s.dout, 'null'::bytea), ','::bytea ORDER BY s.seq)
           || ']'::bytea,
       json_agg(COALESCE(length(s.dout), 4) ORDER BY s.seq)::text
FROM (SELECT i.id, i.seq, i.runner, d.data AS din, o.data AS dout FROM items i
      JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
      WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = %s) AND i.seq > %s
        AND i.status = %s ORDER BY i.seq LIMIT %s) s
"""
def _batch(row: tuple[Any, ...]) -> Batch:
    data = dict(zip(BATCH_COLUMNS, row, strict=True))
    data["metadata"] = orjson.loads(data["metadata"]) if data["metadata"] else {}
    data["error"] = orjson.loads(data["error"]) if data["error"] else None
    return Batch(**data)


def _item(r: tuple[Any, ...], batch_id: str) -> Item:
    return Item(
        rowid=r[0], batch_id=batch_id, seq=r[1], rec0=r[2], n_records=r[3], status=r[4],
        attempts=r[5], input=bytes(r[6]), output=bytes(r[7]) if r[7] is not None else None,
        error=orjson.loads(r[8]) if r[8] else None, usage=orjson.loads(r[9]) if r[9] else None,
        started_at=r[10], finished_at=r[11], runner=r[12],
    )


class PostgresStore(PostgresJobQueue, PostgresWebhooks, PostgresTaskDefs, Store):
    """Store on PostgreSQL, shared by any number of servers and workers.

    Args:
        database_url: ``postgresql://user@host:port/db``.
        min_connections / max_connections: pool size per process.
    """

    def __init__(
        self, database_url: str, *, min_connections: int = 2, max_connections: int = 10
    ) -> None:
        self.url = database_url
        self.db = PgConnections(database_url, min_size=min_connections,
                                max_size=max_connections)
        self._listener: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.db.open()
        async with self.db.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                await _migrate(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            _, stuck = await asyncio.wait([self._listener], timeout=5.0)
            if stuck:
                log.warning("LISTEN connection still open 5 s after close; leaving it")
        await self.db.close()

    async def _tx(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self.db.transaction(lambda conn: fn(conn, *args))

    async def _read(self, sql: str, args: Any = ()) -> list[tuple[Any, ...]]:
        async def fetch(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql, args)
            return await cur.fetchall()

        return await self.db.reading(fetch)

    async def _reading(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self.db.reading(fn)

    async def run_read(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.reading(lambda conn: run_script(conn, script(*args, **kw)))

    async def run_write(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.transaction(lambda conn: run_script(conn, script(*args, **kw)))

    async def ping(self) -> None:
        await self._read("SELECT 1")

    async def subscribe_work(self, callback: Callable[[], None]) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self.db.listen(CHANNEL, callback))

    # ingest
    async def create_batch(
        self, *, batch_id: str, tenant_id: str, owner: str, spec: BatchSpec, now: float
    ) -> None:
        s = spec

        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO batches (id, tenant_id, owner, task, version, runner, status, "
                "records_per_item, priority, parallelism, fail_fast, max_error_pct, budget_usd, "
                "run_after, item_timeout_s, max_attempts, retry_backoff_s, expires_at, "
                "max_input_bytes, max_output_bytes, est_usd_per_record, metadata, created_at, "
                "deliver, idle_timeout_s, last_activity_at, webhook_url, webhook_event) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    batch_id, tenant_id, owner, s.task, s.version, s.runner, s.records_per_item,
                    s.priority, s.parallelism, s.fail_fast, s.max_error_pct, s.budget_usd,
                    s.run_after, s.item_timeout_s, s.max_attempts, s.retry_backoff_s,
                    s.expires_at, s.max_input_bytes, s.max_output_bytes, s.est_usd_per_record,
                    orjson.dumps(s.metadata), now, s.deliver, s.idle_timeout_s, now,
                    s.webhook_url, s.webhook_event,
                ),
            )

        await self._tx(run)

    async def stage_items(self, batch_id: str, stage: str, items: list[StagedItem]) -> None:
        n_records = sum(i.n_records for i in items)

        async def run(conn: Conn) -> None:
            cur = await conn.execute(
                "UPDATE batches SET next_seq = next_seq + %s, next_rec = next_rec + %s "
                "WHERE id = %s RETURNING next_seq, next_rec, pk, staging, deliver",
                (len(items), n_records, batch_id),
            )
            row = await cur.fetchone()
            if row is None:
                raise errors.NotFound("batch not found")
            seq, rec, pk = row[0] - len(items), row[1] - n_records, row[2]
            # A batch being created is invisible as a whole, so its items go straight
            # to the queue; appends to a live batch wait as 'staged' until committed.
            status, token = ("queued", None) if row[3] else ("staged", stage)
            cur = await conn.execute(
                "SELECT nextval('items_id_seq') FROM generate_series(1, %s)", (len(items),)
            )
            ids = [r[0] for r in await cur.fetchall()]
            delivered = False if row[4] else None
            async with conn.cursor() as c, c.copy(
                "COPY items (id, batch_pk, seq, rec0, n_records, status, stage, est_usd, size, "
                "ext_id, meta, delivered, runner, webhook_url, webhook_event) FROM STDIN"
            ) as copy:
                for item_id, it in zip(ids, items, strict=True):
                    await copy.write_row(
                        (item_id, pk, seq, rec, it.n_records, status, token, it.est_usd,
                         len(it.input), it.ext_id, it.meta, delivered, it.runner,
                         it.webhook_url, it.webhook_event)
                    )
                    seq += 1
                    rec += it.n_records
            async with conn.cursor() as c, c.copy(
                "COPY item_inputs (id, data) FROM STDIN"
            ) as copy:
                for item_id, it in zip(ids, items, strict=True):
                    await copy.write_row((item_id, it.input))

        await self._tx(run)

    async def commit_stage(
        self, batch_id: str, stage: str, *, close: bool, now: float,
        idempotency_key: str | None = None, request_hash: str | None = None,
        tenant_input_limit: int | None = None, metering: Metering | None = None,
    ) -> str:
        async def run(conn: Conn) -> str | errors.BatchdError:
            cur = await conn.execute(
                "SELECT pk, tenant_id, status, staging, stop_reason, in_buffer_bytes, "
                "max_input_bytes FROM batches WHERE id = %s FOR UPDATE",
                (batch_id,),
            )
            b = await cur.fetchone()
            if b is None:
                raise errors.NotFound("batch not found")
            pk, tenant_id, status, staging, stop_reason, used, limit = b
            if idempotency_key is not None:
                cur = await conn.execute(
                    "SELECT id FROM batches WHERE tenant_id = %s AND idempotency_key = %s",
                    (tenant_id, idempotency_key),
                )
                other = await cur.fetchone()
                if other is not None:
                    await _discard(conn, batch_id, stage, True)
                    return str(other[0])
            if status != BatchStatus.OPEN or stop_reason:
                # Returned, not raised: raising would roll the discard back.
                await _discard(conn, batch_id, stage, False)
                return errors.Conflict(f"batch is {status} and accepts no more items")
            sums = (
                "SELECT COUNT(*), COALESCE(SUM(n_records), 0), COALESCE(SUM(est_usd), 0), "
                "COALESCE(SUM(size), 0) FROM items WHERE batch_pk = %s"
            )
            if staging:
                cur = await conn.execute(sums, (pk,))
            else:
                cur = await conn.execute(
                    f"{sums} AND status = 'staged' AND stage = %s", (pk, stage)  # type: ignore[arg-type]
                )
            count, records, est, size = await cur.fetchone()  # type: ignore[misc]
            tenant_used = 0
            if tenant_input_limit:
                cur = await conn.execute(
                    "SELECT COALESCE(SUM(in_buffer_bytes), 0) FROM batches "
                    "WHERE tenant_id = %s AND status IN ('open', 'closed')",
                    (tenant_id,),
                )
                tenant_used = int((await cur.fetchone())[0])  # type: ignore[index]
            full = input_buffer_full(
                int(size), batch_used=used, batch_limit=limit, tenant_used=tenant_used,
                tenant_limit=tenant_input_limit,
            )
            if full is not None:
                await _discard(conn, batch_id, stage, bool(staging))
                return full
            if not staging:
                await conn.execute(
                    "UPDATE items SET status = 'queued', stage = NULL "
                    "WHERE batch_pk = %s AND status = 'staged' AND stage = %s",
                    (pk, stage),
                )
            await conn.execute(
                "UPDATE batches SET n_total = n_total + %s, n_queued = n_queued + %s, "
                "r_total = r_total + %s, est_usd = est_usd + %s, in_bytes = in_bytes + %s, "
                "in_buffer_bytes = in_buffer_bytes + %s, last_activity_at = %s, "
                "staging = false, idempotency_key = COALESCE(%s, idempotency_key), "
                "request_hash = COALESCE(%s, request_hash), "
                "status = CASE WHEN %s THEN 'closed' ELSE status END, "
                "closed_at = CASE WHEN %s THEN %s ELSE closed_at END WHERE pk = %s",
                (count, count, records, est, size, size, now, idempotency_key, request_hash,
                 close, close, now, pk),
            )
            await ex.add_usage(conn, tenant_id, now, items_submitted=count,
                               records_submitted=records)
            if metering is not None:
                await metering_.meter(conn, metering, now)  # raises (rolls back) past a quota
            kind = "batch.created" if staging else "batch.items_added"
            await ex.add_event(conn, tenant_id, batch_id, kind, now, {"items": int(count)})
            if close:
                await ex.add_event(conn, tenant_id, batch_id, "batch.closed", now)
                await ex.maybe_finish(conn, batch_id, now)
            if count:
                await conn.execute(f"NOTIFY {CHANNEL}")
            return batch_id

        holder = await self._tx(run)
        if isinstance(holder, errors.BatchdError):
            raise holder  # raised only now: inside, it would roll the discard back
        return holder

    async def discard_stage(self, batch_id: str, stage: str, *, drop_batch: bool) -> None:
        await self._tx(_discard, batch_id, stage, drop_batch)

    # lifecycle and reads
    async def get_batch(self, batch_id: str, *, tenant_id: str | None) -> Batch | None:
        rows = await self._read(f"{Q_BATCH} WHERE id = %s AND NOT staging", (batch_id,))
        if not rows:
            return None
        batch = _batch(rows[0])
        return None if tenant_id is not None and batch.tenant_id != tenant_id else batch

    async def find_batch_by_idempotency(self, tenant_id: str, key: str) -> Batch | None:
        rows = await self._read(
            f"{Q_BATCH} WHERE tenant_id = %s AND idempotency_key = %s", (tenant_id, key)
        )
        return _batch(rows[0]) if rows else None

    async def list_batches(
        self, *, tenant_id: str, owner: str | None, status: str | None,
        before_pk: int | None, limit: int,
    ) -> list[Batch]:
        sql = f"{Q_BATCH} WHERE tenant_id = %s AND NOT staging"
        args: list[Any] = [tenant_id]
        if owner is not None:
            sql += " AND owner = %s"
            args.append(owner)
        if status is not None:
            sql += " AND status = %s"
            args.append(status)
        if before_pk is not None:
            sql += " AND pk < %s"
            args.append(before_pk)
        sql += " ORDER BY pk DESC LIMIT %s"
        args.append(limit)
        return [_batch(r) for r in await self._read(sql, args)]

    async def recent_batches(
        self, *, tenant_id: str, owner: str | None, finished_since: float, limit: int
    ) -> list[Batch]:
        sql = (
            f"{Q_BATCH} WHERE tenant_id = %s AND NOT staging "
            "AND (status IN ('open', 'closed') OR finished_at >= %s)"
        )
        args: list[Any] = [tenant_id, finished_since]
        if owner is not None:
            sql += " AND owner = %s"
            args.append(owner)
        sql += " ORDER BY pk DESC LIMIT %s"
        args.append(limit)
        return [_batch(r) for r in await self._read(sql, args)]

    async def tenant_buffers(self, tenant_id: str) -> tuple[int, int]:
        rows = await self._read(
            "SELECT COALESCE(SUM(in_buffer_bytes), 0), COALESCE(SUM(out_buffer_bytes), 0) "
            "FROM batches WHERE tenant_id = %s AND status IN ('open', 'closed')",
            (tenant_id,),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def take_results(self, batch_id: str, *, limit: int, now: float) -> list[ExportRow]:
        rows = await self._tx(ex.take_results, batch_id, limit, now)
        return [
            ExportRow(
                rowid=r[0], seq=r[1], rec0=r[2], n_records=r[3], status=r[4], input=bytes(r[5]),
                output=bytes(r[6]) if r[6] is not None else None,
                error=orjson.loads(r[7]) if r[7] else None, ext_id=r[8],
                meta=bytes(r[9]) if r[9] is not None else None, compute_ms=r[10],
            )
            for r in rows
        ]

    async def query_batches(
        self, query: BatchQuery, *, offset: int, limit: int
    ) -> tuple[list[Batch], int]:
        rows, total = await self._tx(
            listing.page, query, ", ".join(BATCH_COLUMNS), offset, limit
        )
        return [_batch(r) for r in rows], total

    async def batch_totals(self, query: BatchQuery) -> list[BatchTotals]:
        return await self._tx(listing.totals, query)

    async def list_items(
        self, batch_id: str, *, status: str | None, after_seq: int, limit: int
    ) -> list[Item]:
        sql = (
            f"{Q_ITEM} WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = %s) "
            "AND i.seq > %s AND i.status != 'staged'"
        )
        args: list[Any] = [batch_id, after_seq]
        if status is not None:
            sql += " AND i.status = %s"
            args.append(status)
        sql += " ORDER BY i.seq LIMIT %s"
        args.append(limit)
        return [_item(r, batch_id) for r in await self._read(sql, args)]

    async def get_item(self, batch_id: str, rowid: int) -> Item | None:
        rows = await self._read(
            f"{Q_ITEM} WHERE i.id = %s AND i.status != 'staged' "
            "AND i.batch_pk = (SELECT pk FROM batches WHERE id = %s)",
            (rowid, batch_id),
        )
        return _item(rows[0], batch_id) if rows else None

    async def export_rows(self, batch_id: str, *, after_seq: int, limit: int) -> list[ExportRow]:
        rows = await self._read(
            "SELECT i.id, i.seq, i.rec0, i.n_records, i.status, d.data, o.data, i.error "
            "FROM items i JOIN item_inputs d ON d.id = i.id "
            "LEFT JOIN item_outputs o ON o.id = i.id "
            "WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = %s) AND i.seq > %s "
            "AND i.status IN ('succeeded', 'failed', 'cancelled') ORDER BY i.seq LIMIT %s",
            (batch_id, after_seq, limit),
        )
        return [
            ExportRow(
                rowid=r[0], seq=r[1], rec0=r[2], n_records=r[3], status=r[4], input=bytes(r[5]),
                output=bytes(r[6]) if r[6] is not None else None,
                error=orjson.loads(r[7]) if r[7] else None,
            )
            for r in rows
        ]

    async def export_page(
        self, batch_id: str, *, status: str, after_seq: int, limit: int
    ) -> ExportPage | None:
        async def fetch(conn: Conn) -> tuple[Any, ...] | None:
            # Binary results: bytea arrives as bytes, without hex decoding.
            cur = conn.cursor(binary=True)
            await cur.execute(Q_EXPORT_PAGE, (batch_id, after_seq, status, limit))
            return await cur.fetchone()

        row = await self._reading(fetch)
        if row is None or not row[0]:
            return None
        loads = orjson.loads
        return ExportPage(
            count=row[0], last_seq=row[1], ids=loads(row[2]), runners=loads(row[3]),
            inputs=bytes(row[4]), input_lengths=loads(row[5]), outputs=bytes(row[6]),
            output_lengths=loads(row[7]),
        )

    async def item_keys(
        self, batch_id: str, *, statuses: tuple[str, ...], after_seq: int, limit: int
    ) -> list[tuple[int, int]]:
        rows = await self._read(
            "SELECT seq, id FROM items WHERE batch_pk = (SELECT pk FROM batches WHERE id = %s) "
            "AND seq > %s AND status = ANY(%s) ORDER BY seq LIMIT %s",
            (batch_id, after_seq, list(statuses), limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def item_batch(self, rowid: int, *, tenant_id: str) -> str | None:
        rows = await self._read(
            "SELECT b.id FROM items i JOIN batches b ON b.pk = i.batch_pk "
            "WHERE i.id = %s AND b.tenant_id = %s AND NOT b.staging AND i.status != 'staged'",
            (rowid, tenant_id),
        )
        return str(rows[0][0]) if rows else None

    # execution
    async def claim_items(
        self, *, owner: str, limit: int, now: float, lease_s: float, tenant_cap: int
    ) -> list[ClaimedItem]:
        asked = time.monotonic()

        def lease_from_grant() -> float:
            # A lease runs lease_s from when it is granted: time spent waiting for the
            # database (for a connection, after an outage say) must not come out of it.
            return lease_s + (time.monotonic() - asked)

        found, tenant_running, budgeted = await self._reading(
            lambda conn: ex.candidates(conn, now)
        )
        if not found:
            return []
        claimed: list[ClaimedItem] = []
        plan = claim_plan(found, limit=limit, tenant_running=tenant_running,
                          tenant_cap=tenant_cap)
        try:
            c, want = next(plan)
            while True:
                # One transaction per batch: a claim never holds two batch locks.
                take = ex.claim_from_batch if c.batch_id in budgeted else ex.claim_unbudgeted
                try:
                    got = await self._tx(
                        lambda conn, c=c, want=want, take=take: take(
                            conn, c, want, owner=owner, now=now, lease_s=lease_from_grant()
                        )
                    )
                except errors.BatchdError as exc:
                    if not claimed:
                        raise
                    # Items leased by earlier transactions of this claim must still run.
                    log.warning("claim from batch %s failed (%s)", c.batch_id, exc.message)
                    return claimed
                claimed.extend(got)
                c, want = plan.send(len(got))
        except StopIteration:
            return claimed

    async def finish_items(self, outcomes: list[Outcome], *, now: float) -> int:
        return await self._tx(ex.finish, outcomes, now)

    async def heartbeat(
        self, *, owner: str, now: float, lease_until: float, info: dict[str, Any],
        item_ids: list[int] | None = None,
    ) -> None:
        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO workers (id, info, started_at, heartbeat_at) "
                "VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (owner, orjson.dumps(info), now, now),
            )
            renew = (
                "UPDATE items SET lease_expires = %s WHERE lease_owner = %s "
                "AND status = 'running'"
            )
            if item_ids is None:
                await conn.execute(renew, (lease_until, owner))
            elif item_ids:
                await conn.execute(
                    f"{renew} AND id = ANY(%s)",  # type: ignore[arg-type]
                    (lease_until, owner, item_ids),
                )

        await self._tx(run)

    async def cancel_requests(self, *, owner: str) -> list[int]:
        rows = await self._read(
            "SELECT id FROM items WHERE lease_owner = %s AND status = 'running' "
            "AND cancel_requested",
            (owner,),
        )
        return [r[0] for r in rows]

    async def reap(self, *, now: float, retry_backoff_max_s: float, staging_ttl_s: float) -> int:
        async def run(conn: Conn) -> int:
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (REAP_LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                return 0  # another process is reaping right now
            n = await ex.finish(conn, await ex.expired_leases(conn, now, retry_backoff_max_s),
                                now)
            await ex.expire_batches(conn, now)
            await ex.close_idle(conn, now)
            await ex.drop_abandoned_uploads(conn, now - staging_ttl_s)
            return n

        return await self._tx(run)



async def _discard(conn: Conn, batch_id: str, stage: str, drop_batch: bool) -> None:
    cur = await conn.execute("SELECT pk, staging FROM batches WHERE id = %s", (batch_id,))
    row = await cur.fetchone()
    if row is None:
        return
    pk, staging = row
    if drop_batch and staging:
        await ex.delete_items(conn, "batch_pk = %s", pk)
        await conn.execute("DELETE FROM batches WHERE pk = %s", (pk,))
        return
    await ex.delete_items(conn, "batch_pk = %s AND status = 'staged' AND stage = %s", pk, stage)


async def _migrate(conn: Conn) -> None:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS batchd_schema (version integer NOT NULL)"
    )
    cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM batchd_schema")
    row = await cur.fetchone()
    version = int(row[0]) if row else 0
    for number, script in enumerate(queries.migrations("postgres")[version:], start=version + 1):
        log.info("applying PostgreSQL migration %d", number)
        async with conn.transaction():
            await conn.execute(script)  # type: ignore[arg-type]
            await conn.execute("INSERT INTO batchd_schema (version) VALUES (%s)", (number,))
