"""Runs core's transaction scripts (:mod:`batchd.core.txn`) on a SQLite connection."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from batchd.store import queries
from batchd.store.script import Array, Fetch, Query, Script, T, advance, bind, shape

QUERIES = queries.load("sqlite")


def _json(values: Array) -> str:
    # SQLite has no arrays: a list goes in as JSON, read with json_each().
    return orjson.dumps(list(values)).decode()


def _execute(conn: sqlite3.Connection, query: Query) -> Any:
    sql = QUERIES[query.name]
    if query.fetch is Fetch.EACH:
        conn.executemany(sql, query.params)  # type: ignore[arg-type]
        return None
    cur = conn.execute(sql, bind(query, _json))
    return shape(query.fetch, None if query.fetch is Fetch.COUNT else cur.fetchall(),
                 cur.rowcount)


def run_script(conn: sqlite3.Connection, script: Script[T]) -> T:
    """Drive ``script`` to its end on ``conn`` (the caller holds the transaction)."""
    step = advance(script, None)
    while isinstance(step, Query):
        step = advance(script, _execute(conn, step))
    return step.value  # type: ignore[no-any-return]
