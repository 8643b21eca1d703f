"""Runs core's transaction scripts (:mod:`batchd.core.txn`) on a SQLite connection."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from batchd.store import queries
from batchd.store.script import Array, Fetch, Query, Script, T

QUERIES = queries.load("sqlite")


def _params(query: Query) -> Any:
    # SQLite has no arrays: a list goes in as JSON, read with json_each().
    def bind(v: Any) -> Any:
        return orjson.dumps(list(v)).decode() if isinstance(v, Array) else v

    if isinstance(query.params, dict):
        return {k: bind(v) for k, v in query.params.items()}
    return [bind(v) for v in query.params]


def run_script(conn: sqlite3.Connection, script: Script[T]) -> T:
    """Drive ``script`` to its end on ``conn`` (the caller holds the transaction)."""
    result: Any = None
    while True:
        try:
            query = script.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        sql = QUERIES[query.name]
        if query.fetch is Fetch.EACH:
            conn.executemany(sql, query.params)  # type: ignore[arg-type]
            result = None
            continue
        cur = conn.execute(sql, _params(query) if query.arrays else query.params)
        if query.fetch is Fetch.ONE:
            result = cur.fetchone()
        elif query.fetch is Fetch.ROWS:
            result = cur.fetchall()
        elif query.fetch is Fetch.VALUE:
            row = cur.fetchone()
            result = None if row is None else row[0]
        else:
            result = cur.rowcount
