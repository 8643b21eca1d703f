"""Pages and summaries of a tenant's batches (PostgreSQL)."""

from __future__ import annotations

from typing import Any

from batchd.store.base import BatchQuery, BatchTotals
from batchd.store.postgres.execution import Conn


def _where(q: BatchQuery) -> tuple[str, list[Any]]:
    sql = "tenant_id = %s AND NOT staging"
    args: list[Any] = [q.tenant_id]
    if q.owner is not None:
        sql += " AND owner = %s"
        args.append(q.owner)
    if q.task is not None:
        sql += " AND task = %s"
        args.append(q.task)
    if q.statuses is not None:
        sql += " AND status = ANY(%s)"
        args.append(list(q.statuses))
    if q.started is not None:
        sql += " AND started_at IS NOT NULL" if q.started else " AND started_at IS NULL"
    return sql, args


async def page(
    conn: Conn, q: BatchQuery, columns: str, offset: int, limit: int
) -> tuple[list[tuple[Any, ...]], int]:
    where, args = _where(q)
    cur = await conn.execute(f"SELECT COUNT(*) FROM batches WHERE {where}", args)  # type: ignore[arg-type]
    total = int((await cur.fetchone())[0])  # type: ignore[index]
    cur = await conn.execute(
        f"SELECT {columns} FROM batches WHERE {where} ORDER BY pk DESC LIMIT %s OFFSET %s",  # type: ignore[arg-type]
        (*args, limit, offset),
    )
    return await cur.fetchall(), total


async def totals(conn: Conn, q: BatchQuery) -> list[BatchTotals]:
    where, args = _where(q)
    cur = await conn.execute(
        "SELECT status, started_at IS NOT NULL AS started, COUNT(*), "  # type: ignore[arg-type]
        "COALESCE(SUM(n_total), 0), COALESCE(SUM(actual_usd), 0), "
        f"COALESCE(SUM(tokens_in + tokens_out), 0) FROM batches WHERE {where} "
        "GROUP BY status, started",
        args,
    )
    return [
        BatchTotals(
            status=r[0], started=bool(r[1]), batches=int(r[2]), items=int(r[3]),
            cost_usd=float(r[4]), tokens=int(r[5]),
        )
        for r in await cur.fetchall()
    ]
