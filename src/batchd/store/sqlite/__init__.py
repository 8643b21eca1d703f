"""The embedded SQLite store: WAL, one writer, ``BEGIN IMMEDIATE``, group commit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchd.store.base import Store
from batchd.store.script import Script, T
from batchd.store.sqlite.connection import SqliteConnections, sqlite_path
from batchd.store.sqlite.scripts import QUERIES, run_script


class SqliteStore(Store):
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

    async def reclaim_space(self) -> None:
        await self.db.reclaim(QUERIES["reclaim_space"])

    async def run_read(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.read(lambda conn: run_script(conn, script(*args, **kw)))

    async def run_write(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.write(lambda conn: run_script(conn, script(*args, **kw)))

