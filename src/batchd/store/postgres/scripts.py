"""Runs core's transaction scripts (:mod:`batchd.core.txn`) on a PostgreSQL connection."""

from __future__ import annotations

from typing import Any

import psycopg

from batchd.store import queries
from batchd.store.script import Array, Fetch, Query, Script, T

QUERIES = queries.load("postgres")
Conn = psycopg.AsyncConnection[Any]


def _params(query: Query) -> Any:
    if isinstance(query.params, dict):
        return {k: list(v) if isinstance(v, Array) else v for k, v in query.params.items()}
    return [list(v) if isinstance(v, Array) else v for v in query.params]


async def _each(conn: Conn, sql: str, rows: list[Any]) -> None:
    if not rows:
        return
    if sql.startswith("COPY"):
        async with conn.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                await copy.write_row(row)
    elif "unnest(" in sql:
        # One statement over column arrays: no round trip per row.
        await conn.execute(sql, [list(col) for col in zip(*rows, strict=True)])
    else:
        async with conn.cursor() as cur:
            await cur.executemany(sql, rows)


async def run_script(conn: Conn, script: Script[T]) -> T:
    """Drive ``script`` to its end on ``conn`` (the caller holds the transaction)."""
    result: Any = None
    while True:
        try:
            query = script.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        sql = QUERIES[query.name]
        if query.fetch is Fetch.EACH:
            await _each(conn, sql, query.params)  # type: ignore[arg-type]
            result = None
            continue
        cur = await conn.execute(sql, _params(query) if query.arrays else query.params)
        if query.fetch is Fetch.ONE:
            result = await cur.fetchone()
        elif query.fetch is Fetch.ROWS:
            result = await cur.fetchall()
        elif query.fetch is Fetch.VALUE:
            row = await cur.fetchone()
            result = None if row is None else row[0]
        else:
            result = cur.rowcount
