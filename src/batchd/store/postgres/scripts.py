"""Runs core's transaction scripts (:mod:`batchd.core.txn`) on a PostgreSQL connection."""

from __future__ import annotations

from typing import Any

import psycopg

from batchd.store import queries
from batchd.store.script import Fetch, Query, Script, T, advance, bind, shape

QUERIES = queries.load("postgres")
# Queries whose text starts with "-- binary": their bytea columns come back in binary
# form, not as hex text to decode (the bulk export's pages).
BINARY = frozenset(name for name, sql in QUERIES.items() if sql.startswith("-- binary"))
Conn = psycopg.AsyncConnection[Any]


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


async def _execute(conn: Conn, query: Query) -> Any:
    sql = QUERIES[query.name]
    if query.fetch is Fetch.EACH:
        await _each(conn, sql, query.params)  # type: ignore[arg-type]
        return None
    cursor = conn.cursor(binary=True) if query.name in BINARY else conn.cursor()
    cur = await cursor.execute(sql, bind(query, list))
    rows = None if query.fetch is Fetch.COUNT else await cur.fetchall()
    return shape(query.fetch, rows, cur.rowcount)


async def run_script(conn: Conn, script: Script[T]) -> T:
    """Drive ``script`` to its end on ``conn`` (the caller holds the transaction)."""
    step = advance(script, None)
    while isinstance(step, Query):
        step = advance(script, await _execute(conn, step))
    return step.value  # type: ignore[no-any-return]
