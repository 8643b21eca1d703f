"""Runs core's transaction scripts (:mod:`batchd.core.txn`) on a PostgreSQL connection."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson
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
        # One statement over column arrays (each cast to its type): no round trip per row.
        await conn.execute(sql, [pg_array(col) for col in zip(*rows, strict=True)])
    else:
        async with conn.cursor() as cur:
            await cur.executemany(sql, rows)


_WORDS = re.compile(r"\w+(?:,\w+)*", re.ASCII)
_NoneType = type(None)


def pg_array(values: Sequence[Any]) -> Any:
    """``values`` as PostgreSQL's text form of an array, made in C calls, when they are all
    numbers, all bytes (or NULL), or all plain words; else a list, which psycopg dumps,
    escapes and quotes element by element in Python (a quarter of a worker's time
    holding the GIL went there). The statement casts the parameter to its array type."""
    kinds = set(map(type, values))
    if kinds <= {int, float}:
        try:
            text = orjson.dumps(values)
        except orjson.JSONEncodeError:  # an integer wider than 64 bits
            return list(values)
        if b"null" not in text:  # orjson writes NaN and the infinities as null
            return "{" + text[1:-1].decode() + "}"
    elif kinds <= {bytes, _NoneType}:
        if _NoneType not in kinds:
            return '{"\\\\x' + '","\\\\x'.join(map(bytes.hex, values)) + '"}'
        return "{" + ",".join("NULL" if v is None else f'"\\\\x{v.hex()}"' for v in values) + "}"
    elif kinds == {str}:
        words = ",".join(values)
        if _WORDS.fullmatch(words) and "null" not in {v.lower() for v in set(values)}:
            return "{" + words + "}"  # no quote, brace, comma, space or backslash to escape
    return list(values)


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
