"""Pages and summaries of a tenant's batches (SQLite)."""

from __future__ import annotations

import sqlite3
from typing import Any

from batchd.store.base import BatchQuery, BatchTotals


def _where(q: BatchQuery) -> tuple[str, list[Any]]:
    sql = "tenant_id = ? AND staging = 0"
    args: list[Any] = [q.tenant_id]
    if q.owner is not None:
        sql += " AND owner = ?"
        args.append(q.owner)
    if q.task is not None:
        sql += " AND task = ?"
        args.append(q.task)
    if q.statuses is not None:
        sql += f" AND status IN ({','.join('?' * len(q.statuses))})" if q.statuses else " AND 0"
        args.extend(q.statuses)
    if q.started is not None:
        sql += " AND started_at IS NOT NULL" if q.started else " AND started_at IS NULL"
    return sql, args


def page(
    conn: sqlite3.Connection, q: BatchQuery, offset: int, limit: int
) -> tuple[list[sqlite3.Row], int]:
    where, args = _where(q)
    total = conn.execute(f"SELECT COUNT(*) FROM batches WHERE {where}", args).fetchone()[0]
    rows = conn.execute(
        f"SELECT * FROM batches WHERE {where} ORDER BY pk DESC LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    return rows, int(total)


def totals(conn: sqlite3.Connection, q: BatchQuery) -> list[BatchTotals]:
    where, args = _where(q)
    return [
        BatchTotals(
            status=r[0], started=bool(r[1]), batches=int(r[2]), items=int(r[3]),
            cost_usd=float(r[4]), tokens=int(r[5]),
        )
        for r in conn.execute(
            "SELECT status, started_at IS NOT NULL AS started, COUNT(*), "
            "COALESCE(SUM(n_total), 0), COALESCE(SUM(actual_usd), 0), "
            f"COALESCE(SUM(tokens_in + tokens_out), 0) FROM batches WHERE {where} "
            "GROUP BY status, started",
            args,
        )
    ]
