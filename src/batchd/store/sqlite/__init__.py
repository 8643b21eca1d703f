"""The embedded SQLite store: WAL, one writer, ``BEGIN IMMEDIATE``, group commit."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from batchd.core.quotas import Metering, input_buffer_full
from batchd.domain import errors
from batchd.domain.models import (
    Batch,
    BatchSpec,
    ClaimedItem,
    Item,
    Outcome,
)
from batchd.domain.states import BatchStatus
from batchd.store.base import (
    BatchQuery,
    BatchTotals,
    ExportPage,
    ExportRow,
    StagedItem,
    Store,
)
from batchd.store.script import Script, T
from batchd.store.sqlite import execution as ex
from batchd.store.sqlite import listing
from batchd.store.sqlite import usage as metering_
from batchd.store.sqlite.connection import SqliteConnections, sqlite_path
from batchd.store.sqlite.jobqueue import SqliteJobQueue
from batchd.store.sqlite.scripts import run_script
from batchd.store.sqlite.taskdefs import SqliteTaskDefs
from batchd.store.sqlite.webhooks import SqliteWebhooks

_BATCH_FIELDS = {f for f in Batch.__dataclass_fields__}


def _batch(row: sqlite3.Row) -> Batch:
    data = {k: row[k] for k in row.keys() if k in _BATCH_FIELDS}  # noqa: SIM118
    data["metadata"] = orjson.loads(data["metadata"]) if data["metadata"] else {}
    data["error"] = orjson.loads(data["error"]) if data["error"] else None
    data["fail_fast"] = bool(data["fail_fast"])
    data["deliver"] = bool(data["deliver"])
    return Batch(**data)


def _item(row: sqlite3.Row, batch_id: str) -> Item:
    return Item(
        rowid=row["id"], batch_id=batch_id, seq=row["seq"], rec0=row["rec0"],
        n_records=row["n_records"], status=row["status"], attempts=row["attempts"],
        input=row["input"], output=row["output"],
        error=orjson.loads(row["error"]) if row["error"] else None,
        usage=orjson.loads(row["usage"]) if row["usage"] else None,
        started_at=row["started_at"], finished_at=row["finished_at"], runner=row["runner"],
    )


Q_ITEM = (
    "SELECT i.*, d.data AS input, o.data AS output FROM items i "
    "JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id"
)
# A page of the bulk export, assembled by SQLite in one row: the reading thread then
# needs the GIL a few times per page rather than for every row. The aggregates see the
# subquery's rows in its (seq) order, all of them in the same one.
Q_EXPORT_PAGE = """
SELECT count(*), max(seq), json_group_array(id), json_group_array(runner),
       CAST('[' || group_concat(CAST(din AS TEXT), ',') || ']' AS BLOB),
       json_group_array(length(din)),
       CAST('[' || group_concat(COALESCE(CAST(dout AS TEXT), 'null'), ',') || ']' AS BLOB),
       json_group_array(COALESCE(length(dout), 4))
FROM (SELECT i.id, i.seq, i.runner, d.data AS din, o.data AS dout FROM items i
      JOIN item_inputs d ON d.id = i.id LEFT JOIN item_outputs o ON o.id = i.id
      WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = ?) AND i.seq > ? AND i.status = ?
      ORDER BY i.seq LIMIT ?)
"""


class SqliteStore(SqliteJobQueue, SqliteWebhooks, SqliteTaskDefs, Store):
    """Store on one SQLite file, shared safely by several processes."""

    def __init__(self, database_url: str, *, readers: int = 4) -> None:
        self.db = SqliteConnections(sqlite_path(database_url), readers=readers)

    async def open(self) -> None:
        await self.db.write(lambda conn: None)  # creates the file, checks the lock
        self.db.migrate()

    async def close(self) -> None:
        self.db.shutdown()

    async def ping(self) -> None:
        await self.db.read(lambda c: c.execute("SELECT 1").fetchone())

    async def run_read(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.read(lambda conn: run_script(conn, script(*args, **kw)))

    async def run_write(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.write(lambda conn: run_script(conn, script(*args, **kw)))

    # ingest
    async def create_batch(
        self, *, batch_id: str, tenant_id: str, owner: str, spec: BatchSpec, now: float
    ) -> None:
        s = spec
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO batches (id, tenant_id, owner, task, version, runner, status, "
                "records_per_item, priority, parallelism, fail_fast, max_error_pct, budget_usd, "
                "run_after, item_timeout_s, max_attempts, retry_backoff_s, expires_at, "
                "max_input_bytes, max_output_bytes, est_usd_per_record, metadata, created_at, "
                "deliver, idle_timeout_s, last_activity_at, webhook_url, webhook_event) "
                "VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?, ?)",
                (
                    batch_id, tenant_id, owner, s.task, s.version, s.runner, s.records_per_item,
                    s.priority, s.parallelism, int(s.fail_fast), s.max_error_pct, s.budget_usd,
                    s.run_after, s.item_timeout_s, s.max_attempts, s.retry_backoff_s,
                    s.expires_at, s.max_input_bytes, s.max_output_bytes, s.est_usd_per_record,
                    orjson.dumps(s.metadata), now, int(s.deliver), s.idle_timeout_s, now,
                    s.webhook_url, s.webhook_event,
                ),
            )
        )

    async def stage_items(self, batch_id: str, stage: str, items: list[StagedItem]) -> None:
        n_records = sum(i.n_records for i in items)

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "UPDATE batches SET next_seq = next_seq + ?, next_rec = next_rec + ? "
                "WHERE id = ? RETURNING next_seq, next_rec, pk, staging, deliver",
                (len(items), n_records, batch_id),
            ).fetchone()
            if row is None:
                raise errors.NotFound("batch not found")
            seq, rec, pk = row[0] - len(items), row[1] - n_records, row[2]
            # A batch being created is invisible as a whole, so its items go straight
            # to the queue; appends to a live batch wait as 'staged' until committed.
            status, token = ("queued", None) if row[3] else ("staged", stage)
            # Ids are dealt here (one writer holds the lock) so both tables get them.
            next_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM items").fetchone()[0]
            delivered = 0 if row[4] else None
            rows, data = [], []
            for it in items:
                rows.append(
                    (next_id, pk, seq, rec, it.n_records, status, token, it.est_usd,
                     len(it.input), it.ext_id, it.meta, delivered, it.runner, it.webhook_url,
                     it.webhook_event)
                )
                data.append((next_id, it.input))
                next_id += 1
                seq += 1
                rec += it.n_records
            conn.executemany(
                "INSERT INTO items (id, batch_pk, seq, rec0, n_records, status, stage, est_usd, "
                "size, ext_id, meta, delivered, runner, webhook_url, webhook_event) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany("INSERT INTO item_inputs (id, data) VALUES (?, ?)", data)

        await self.db.write(run)

    async def commit_stage(
        self, batch_id: str, stage: str, *, close: bool, now: float,
        idempotency_key: str | None = None, request_hash: str | None = None,
        tenant_input_limit: int | None = None, metering: Metering | None = None,
    ) -> str:
        def run(conn: sqlite3.Connection) -> str | errors.BatchdError:
            b = conn.execute(
                "SELECT pk, tenant_id, status, staging, stop_reason, in_buffer_bytes, "
                "max_input_bytes FROM batches WHERE id = ?",
                (batch_id,),
            ).fetchone()
            if b is None:
                raise errors.NotFound("batch not found")
            if idempotency_key is not None:
                other = conn.execute(
                    "SELECT id FROM batches WHERE tenant_id = ? AND idempotency_key = ?",
                    (b["tenant_id"], idempotency_key),
                ).fetchone()
                if other is not None:
                    _discard(conn, batch_id, stage, drop_batch=True)
                    return str(other["id"])
            if b["status"] != BatchStatus.OPEN or b["stop_reason"]:
                # Returned, not raised: raising would roll the discard back.
                _discard(conn, batch_id, stage, drop_batch=False)
                return errors.Conflict(f"batch is {b['status']} and accepts no more items")
            sums = (
                "SELECT COUNT(*), COALESCE(SUM(n_records), 0), COALESCE(SUM(est_usd), 0), "
                "COALESCE(SUM(size), 0) FROM items WHERE batch_pk = ?"
            )
            if b["staging"]:
                count, records, est, size = conn.execute(sums, (b["pk"],)).fetchone()
            else:
                count, records, est, size = conn.execute(
                    f"{sums} AND status = 'staged' AND stage = ?", (b["pk"], stage)
                ).fetchone()
            tenant_used = conn.execute(
                "SELECT COALESCE(SUM(in_buffer_bytes), 0) FROM batches "
                "WHERE tenant_id = ? AND status IN ('open', 'closed')",
                (b["tenant_id"],),
            ).fetchone()[0] if tenant_input_limit else 0
            full = input_buffer_full(
                size, batch_used=b["in_buffer_bytes"], batch_limit=b["max_input_bytes"],
                tenant_used=tenant_used, tenant_limit=tenant_input_limit,
            )
            if full is not None:
                _discard(conn, batch_id, stage, drop_batch=bool(b["staging"]))
                return full
            if not b["staging"]:
                conn.execute(
                    "UPDATE items SET status = 'queued', stage = NULL "
                    "WHERE batch_pk = ? AND status = 'staged' AND stage = ?",
                    (b["pk"], stage),
                )
            conn.execute(
                "UPDATE batches SET n_total = n_total + ?, n_queued = n_queued + ?, "
                "r_total = r_total + ?, est_usd = est_usd + ?, in_bytes = in_bytes + ?, "
                "in_buffer_bytes = in_buffer_bytes + ?, last_activity_at = ?, "
                "staging = 0, idempotency_key = COALESCE(?, idempotency_key), "
                "request_hash = COALESCE(?, request_hash), "
                "status = CASE WHEN ? THEN 'closed' ELSE status END, "
                "closed_at = CASE WHEN ? THEN ? ELSE closed_at END WHERE id = ?",
                (
                    count, count, records, est, size, size, now, idempotency_key, request_hash,
                    int(close), int(close), now, batch_id,
                ),
            )
            ex.add_usage(
                conn, b["tenant_id"], now, items_submitted=count, records_submitted=records
            )
            if metering is not None:
                metering_.meter(conn, metering, now)  # raises (rolls back) past a quota
            kind = "batch.created" if b["staging"] else "batch.items_added"
            ex.add_event(conn, b["tenant_id"], batch_id, kind, now, {"items": count})
            if close:
                ex.add_event(conn, b["tenant_id"], batch_id, "batch.closed", now)
                ex.maybe_finish(conn, batch_id, now)
            return batch_id

        holder = await self.db.write(run)
        if isinstance(holder, errors.BatchdError):
            raise holder  # raised only now: inside, it would roll the discard back
        return holder

    async def discard_stage(self, batch_id: str, stage: str, *, drop_batch: bool) -> None:
        await self.db.write(_discard, batch_id, stage, drop_batch)

    # lifecycle and reads
    async def get_batch(self, batch_id: str, *, tenant_id: str | None) -> Batch | None:
        def run(conn: sqlite3.Connection) -> Batch | None:
            r = conn.execute(
                "SELECT * FROM batches WHERE id = ? AND staging = 0", (batch_id,)
            ).fetchone()
            if r is None or (tenant_id is not None and r["tenant_id"] != tenant_id):
                return None
            return _batch(r)

        return await self.db.read(run)

    async def find_batch_by_idempotency(self, tenant_id: str, key: str) -> Batch | None:
        def run(conn: sqlite3.Connection) -> Batch | None:
            r = conn.execute(
                "SELECT * FROM batches WHERE tenant_id = ? AND idempotency_key = ?",
                (tenant_id, key),
            ).fetchone()
            return _batch(r) if r else None

        return await self.db.read(run)

    async def list_batches(
        self, *, tenant_id: str, owner: str | None, status: str | None,
        before_pk: int | None, limit: int,
    ) -> list[Batch]:
        sql = "SELECT * FROM batches WHERE tenant_id = ? AND staging = 0"
        args: list[Any] = [tenant_id]
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if before_pk is not None:
            sql += " AND pk < ?"
            args.append(before_pk)
        sql += " ORDER BY pk DESC LIMIT ?"
        args.append(limit)
        return await self.db.read(lambda c: [_batch(r) for r in c.execute(sql, args)])

    async def recent_batches(
        self, *, tenant_id: str, owner: str | None, finished_since: float, limit: int
    ) -> list[Batch]:
        sql = (
            "SELECT * FROM batches WHERE tenant_id = ? AND staging = 0 "
            "AND (status IN ('open', 'closed') OR finished_at >= ?)"
        )
        args: list[Any] = [tenant_id, finished_since]
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        sql += " ORDER BY pk DESC LIMIT ?"
        args.append(limit)
        return await self.db.read(lambda c: [_batch(r) for r in c.execute(sql, args)])

    async def tenant_buffers(self, tenant_id: str) -> tuple[int, int]:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT COALESCE(SUM(in_buffer_bytes), 0), COALESCE(SUM(out_buffer_bytes), 0) "
                "FROM batches WHERE tenant_id = ? AND status IN ('open', 'closed')",
                (tenant_id,),
            ).fetchone()
        )
        return int(row[0]), int(row[1])

    async def take_results(self, batch_id: str, *, limit: int, now: float) -> list[ExportRow]:
        rows = await self.db.write(ex.take_results, batch_id, limit, now)
        return [
            ExportRow(
                rowid=r[0], seq=r[1], rec0=r[2], n_records=r[3], status=r[4], input=r[5],
                output=r[6], error=orjson.loads(r[7]) if r[7] else None, ext_id=r[8],
                meta=r[9], compute_ms=r[10],
            )
            for r in rows
        ]

    async def query_batches(
        self, query: BatchQuery, *, offset: int, limit: int
    ) -> tuple[list[Batch], int]:
        rows, total = await self.db.read(listing.page, query, offset, limit)
        return [_batch(r) for r in rows], total

    async def batch_totals(self, query: BatchQuery) -> list[BatchTotals]:
        return await self.db.read(listing.totals, query)

    async def list_items(
        self, batch_id: str, *, status: str | None, after_seq: int, limit: int
    ) -> list[Item]:
        sql = (
            f"{Q_ITEM} WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = ?) "
            "AND i.seq > ? AND i.status != 'staged'"
        )
        args: list[Any] = [batch_id, after_seq]
        if status is not None:
            sql += " AND i.status = ?"
            args.append(status)
        sql += " ORDER BY i.seq LIMIT ?"
        args.append(limit)
        return await self.db.read(lambda c: [_item(r, batch_id) for r in c.execute(sql, args)])

    async def get_item(self, batch_id: str, rowid: int) -> Item | None:
        def run(conn: sqlite3.Connection) -> Item | None:
            r = conn.execute(
                f"{Q_ITEM} WHERE i.id = ? AND i.status != 'staged' "
                "AND i.batch_pk = (SELECT pk FROM batches WHERE id = ?)",
                (rowid, batch_id),
            ).fetchone()
            return _item(r, batch_id) if r else None

        return await self.db.read(run)

    async def export_rows(self, batch_id: str, *, after_seq: int, limit: int) -> list[ExportRow]:
        def run(conn: sqlite3.Connection) -> list[ExportRow]:
            return [
                ExportRow(
                    rowid=r[0], seq=r[1], rec0=r[2], n_records=r[3], status=r[4], input=r[5],
                    output=r[6], error=orjson.loads(r[7]) if r[7] else None,
                )
                for r in c_exec(conn, batch_id, after_seq, limit)
            ]

        def c_exec(conn: sqlite3.Connection, b: str, s: int, n: int) -> Any:
            return conn.execute(
                "SELECT i.id, i.seq, i.rec0, i.n_records, i.status, d.data, o.data, i.error "
                "FROM items i JOIN item_inputs d ON d.id = i.id "
                "LEFT JOIN item_outputs o ON o.id = i.id "
                "WHERE i.batch_pk = (SELECT pk FROM batches WHERE id = ?) AND i.seq > ? "
                "AND i.status IN ('succeeded', 'failed', 'cancelled')"
                " ORDER BY i.seq LIMIT ?",
                (b, s, n),
            )

        return await self.db.read(run)

    async def export_page(
        self, batch_id: str, *, status: str, after_seq: int, limit: int
    ) -> ExportPage | None:
        def run(conn: sqlite3.Connection) -> tuple[Any, ...]:
            return tuple(conn.execute(Q_EXPORT_PAGE, (batch_id, after_seq, status, limit))
                         .fetchone())

        row = await self.db.read(run)
        if not row[0]:
            return None
        loads = orjson.loads
        return ExportPage(
            count=row[0], last_seq=row[1], ids=loads(row[2]), runners=loads(row[3]),
            inputs=row[4], input_lengths=loads(row[5]), outputs=row[6],
            output_lengths=loads(row[7]),
        )

    async def item_keys(
        self, batch_id: str, *, statuses: tuple[str, ...], after_seq: int, limit: int
    ) -> list[tuple[int, int]]:
        marks = ",".join("?" * len(statuses))
        return await self.db.read(
            lambda c: [
                (r[0], r[1])
                for r in c.execute(
                    "SELECT seq, id FROM items "
                    "WHERE batch_pk = (SELECT pk FROM batches WHERE id = ?) AND seq > ? "
                    f"AND status IN ({marks}) ORDER BY seq LIMIT ?",
                    (batch_id, after_seq, *statuses, limit),
                )
            ]
        )

    async def item_batch(self, rowid: int, *, tenant_id: str) -> str | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT b.id FROM items i JOIN batches b ON b.pk = i.batch_pk "
                "WHERE i.id = ? AND b.tenant_id = ? AND b.staging = 0 AND i.status != 'staged'",
                (rowid, tenant_id),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    # execution
    async def claim_items(
        self, *, owner: str, limit: int, now: float, lease_s: float, tenant_cap: int
    ) -> list[ClaimedItem]:
        return await self.db.write(ex.claim, owner, limit, now, lease_s, tenant_cap)

    async def finish_items(self, outcomes: list[Outcome], *, now: float) -> int:
        return await self.db.write(ex.finish, outcomes, now)

    async def heartbeat(
        self, *, owner: str, now: float, lease_until: float, info: dict[str, Any],
        item_ids: list[int] | None = None,
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO workers (id, info, started_at, heartbeat_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                (owner, orjson.dumps(info), now, now),
            )
            renew = (
                "UPDATE items SET lease_expires = ? WHERE lease_owner = ? AND status = 'running'"
            )
            if item_ids is None:
                conn.execute(renew, (lease_until, owner))
                return
            for start in range(0, len(item_ids), 900):
                part = item_ids[start : start + 900]
                conn.execute(
                    f"{renew} AND id IN ({','.join('?' * len(part))})", (lease_until, owner, *part)
                )

        await self.db.write(run)

    async def cancel_requests(self, *, owner: str) -> list[int]:
        return await self.db.read(
            lambda c: [
                r[0]
                for r in c.execute(
                    "SELECT id FROM items WHERE lease_owner = ? AND status = 'running' "
                    "AND cancel_requested = 1",
                    (owner,),
                )
            ]
        )

    async def reap(self, *, now: float, retry_backoff_max_s: float, staging_ttl_s: float) -> int:
        return await self.db.write(ex.reap, now, retry_backoff_max_s, staging_ttl_s)



def _discard(conn: sqlite3.Connection, batch_id: str, stage: str, drop_batch: bool) -> None:
    row = conn.execute("SELECT pk, staging FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        return
    if drop_batch and row["staging"]:
        ex.delete_items(conn, "batch_pk = ?", row["pk"])
        conn.execute("DELETE FROM batches WHERE pk = ?", (row["pk"],))
        return
    ex.delete_items(conn, "batch_pk = ? AND status = 'staged' AND stage = ?", row["pk"], stage)
