"""Databases as an older batchd left them, for the tests of a later migration: the schema
migrations up to a number, applied as each store applies them, then rows written by
hand; the database opened by this version migrates the rest."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from batchd.core.db import Database
from batchd.store import queries
from tests.conftest import create_pg_database, drop_database

BACKENDS = ("postgres", "sqlite")
# fill(cursor, placeholder): writes the old rows ("?" on SQLite, "%s" on PostgreSQL).
Fill = Callable[[Any, str], None]


def _sqlite_at(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # a migration vacuums
    for script in queries.migrations("sqlite")[:version]:
        for statement in script.split(";"):  # as the store applies them
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version={version}")
    return conn


@contextlib.asynccontextmanager
async def old_database(backend: str, tmp_path: Path, version: int,
                       fill: Fill) -> AsyncIterator[Database]:
    """A database of ``backend`` at schema ``version`` filled by ``fill``, opened (so
    migrated to the current schema) and closed after."""
    if backend == "sqlite":
        from batchd.store.sqlite import SqliteStore

        path = tmp_path / "old.db"
        conn = _sqlite_at(path, version)
        fill(conn, "?")
        conn.close()
        store = Database(SqliteStore(f"sqlite:///{path}"))
        url = None
    else:
        import psycopg

        from batchd.store.postgres import PostgresStore

        url = create_pg_database()
        with psycopg.connect(url) as pg:
            pg.execute("CREATE TABLE batchd_schema (version integer NOT NULL)")
            for number, script in enumerate(queries.migrations("postgres")[:version], start=1):
                pg.execute(script)  # type: ignore[arg-type]
                pg.execute("INSERT INTO batchd_schema (version) VALUES (%s)", (number,))
            with pg.cursor() as cur:
                fill(cur, "%s")
        store = Database(PostgresStore(url, min_connections=1, max_connections=2))
    try:
        await store.open()
        yield store
    finally:
        await store.close()
        if url is not None:
            drop_database(url)
