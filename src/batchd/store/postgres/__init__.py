"""The PostgreSQL store: many servers and workers on one database.

psycopg 3 (async) with a connection pool; claims with ``FOR UPDATE SKIP LOCKED``;
bulk ingest with ``COPY``; group commit of outcomes; ``LISTEN/NOTIFY`` wakes idle
workers when new items are committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from batchd.domain import errors
from batchd.store import queries
from batchd.store.base import Store
from batchd.store.postgres.connection import PgConnections
from batchd.store.postgres.scripts import QUERIES, Conn, run_script
from batchd.store.script import Script

log = logging.getLogger(__name__)
T = TypeVar("T")
CHANNEL = "batchd_work"
MIGRATION_LOCK = 0x62617463  # advisory lock id: one migrator at a time


class PostgresStore(Store):
    """Store on PostgreSQL, shared by any number of servers and workers.

    Args:
        database_url: ``postgresql://user@host:port/db``.
        min_connections / max_connections: pool size per process.
    """

    concurrent_claims = True

    def __init__(
        self, database_url: str, *, min_connections: int = 2, max_connections: int = 10
    ) -> None:
        self.url = database_url
        self.db = PgConnections(database_url, min_size=min_connections,
                                max_size=max_connections)
        self._listener: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.db.open()
        async with self.db.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                await _migrate(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            _, stuck = await asyncio.wait([self._listener], timeout=5.0)
            if stuck:
                log.warning("LISTEN connection still open 5 s after close; leaving it")
        await self.db.close()

    async def run_read(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.reading(lambda conn: run_script(conn, script(*args, **kw)))

    async def run_write(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        return await self.db.transaction(lambda conn: run_script(conn, script(*args, **kw)))

    async def reclaim_space(self) -> None:
        try:
            await self.db.transaction(lambda conn: conn.execute(QUERIES["reclaim_space"]))
        except errors.BatchdError as exc:
            log.warning("could not reclaim the stage's space: %s", exc)

    async def ping(self) -> None:
        await self.db.reading(lambda conn: conn.execute("SELECT 1"))

    async def subscribe_work(self, callback: Callable[[], None]) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self.db.listen(CHANNEL, callback))


async def _migrate(conn: Conn) -> None:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS batchd_schema (version integer NOT NULL)"
    )
    cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM batchd_schema")
    row = await cur.fetchone()
    version = int(row[0]) if row else 0
    for number, script in enumerate(queries.migrations("postgres")[version:], start=version + 1):
        log.info("applying PostgreSQL migration %d", number)
        async with conn.transaction():
            await conn.execute(script)  # type: ignore[arg-type]
            await conn.execute("INSERT INTO batchd_schema (version) VALUES (%s)", (number,))
