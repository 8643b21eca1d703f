"""SQLite connections: one writer thread, a few reader threads, WAL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from batchd.domain import errors
from batchd.store import queries
from batchd.store.sqlite.writer import GroupWriter, Write, is_busy, transaction

T = TypeVar("T")
log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30000
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # NORMAL survives any process crash (kill -9); only an OS crash may lose the
    # last commits, which WAL keeps consistent.
    "PRAGMA synchronous=NORMAL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    # Temporary b-trees stay in memory: the hot path's small ones (every claim and commit)
    # would cost a fifth of its speed in a file. Deleting many rows switches to FILE for
    # its transaction (the named queries bulk_begin and bulk_end).
    "PRAGMA temp_store=MEMORY",
)
# Truncating the WAL waits for readers on older snapshots; the writer waits at most this
# long for them (the WAL is reused from its start anyway, only its file stays longer).
CHECKPOINT_WAIT_MS = 200
# A migration with this line runs outside a transaction (VACUUM cannot run inside one).
NO_TRANSACTION = "-- batchd: no transaction"
# Page cache per connection, in KiB. The caches fill up as the database grows, so
# they bound the server's memory: 16 MiB for the writer, 4 MiB per reader, and no
# mmap (mapped pages count as resident memory too).
WRITER_CACHE_KIB = 16384
READER_CACHE_KIB = 4096


def sqlite_path(database_url: str) -> str:
    """``sqlite:///./x.db`` → ``./x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    if not database_url.startswith("sqlite:///"):
        raise ValueError("a SQLite url looks like sqlite:///path/to/file.db")
    path = database_url[len("sqlite:///") :]
    if not path or path == ":memory:":
        raise ValueError("batchd needs a SQLite file (several connections share it)")
    return path


def connect(path: str, *, cache_kib: int = READER_CACHE_KIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        conn.execute(pragma)
    conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
    return conn


class SqliteConnections:
    """Runs write transactions on one thread and reads on a small pool."""

    def __init__(self, path: str, *, readers: int = 4) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="batchd-sqlite-r")
        self._local = threading.local()
        self._wconn: sqlite3.Connection | None = None
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = GroupWriter(self._writer_conn, _translate)

    def _reader_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _writer_conn(self) -> sqlite3.Connection:
        if self._wconn is None:
            self._wconn = connect(self.path, cache_kib=WRITER_CACHE_KIB)
            with self._lock:
                self._all.append(self._wconn)
        return self._wconn

    def migrate(self) -> None:
        self._writer.submit(Write(_migrate, bare=True)).result()

    async def reclaim(self, vacuum_sql: str) -> None:
        """Move the free pages out of the file (``vacuum_sql``: an incremental vacuum),
        then truncate the WAL; outside any transaction. A failure is logged."""
        await self._bare(lambda conn: self._reclaim(conn, vacuum_sql))

    async def _bare(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._writer.submit(Write(fn, bare=True)))

    def _reclaim(self, conn: sqlite3.Connection, vacuum_sql: str) -> None:
        try:
            # execute() would free one page per call (the pragma returns no columns, so
            # the sqlite3 module steps it once); executescript() steps it to its end.
            conn.executescript(vacuum_sql)
            conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            log.warning("could not reclaim free space: %s", exc)

    def _run_read(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._reader_conn()
        for attempt in range(10):
            try:
                return fn(conn, *args)
            except sqlite3.OperationalError as exc:
                if is_busy(exc) and attempt < 9:
                    time.sleep(0.01 * (attempt + 1))
                    continue
                raise _translate(exc) from exc
        raise errors.StoreError("database is busy")

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in a write transaction, which concurrent writes may share
        (each in a savepoint of its own); returns once it is committed."""
        try:
            future = self._writer.submit(Write(lambda conn: fn(conn, *args)))
        except RuntimeError as exc:
            raise errors.StoreError("the store is closed") from exc
        return await asyncio.wrap_future(future)  # type: ignore[no-any-return]

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await _submit(self._readers, lambda: self._run_read(fn, *args))

    def shutdown(self) -> None:
        self._writer.close()
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._wconn = None


async def _submit(pool: ThreadPoolExecutor, call: Callable[[], T]) -> T:
    try:
        future = asyncio.get_running_loop().run_in_executor(pool, call)
    except RuntimeError as exc:  # the pool was shut down: the store is closed
        raise errors.StoreError("the store is closed") from exc
    return await future


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, OverflowError):
        return errors.InvalidInput(f"number too large to store: {exc}")
    if isinstance(exc, errors.BatchdError) or not isinstance(exc, sqlite3.Error):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        return errors.Conflict(f"conflicting write: {exc}")
    if isinstance(exc, sqlite3.DataError):
        return errors.InvalidInput(f"value not storable: {exc}")
    if "too big" in str(exc):
        return errors.LimitExceeded(f"value too large to store: {exc}")
    return errors.StoreError(f"storage error: {exc}")


def _migrate(conn: sqlite3.Connection) -> None:
    while (pending := transaction(conn, _apply_migrations)) is not None:
        number, script = pending
        log.info("applying SQLite migration %d outside a transaction", number)
        _execute_all(conn, script)
        transaction(conn, functools.partial(_set_version, number=number))


def _apply_migrations(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """Apply the pending migrations up to the first that must run outside a transaction;
    that one's (number, script), or None when none is left."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(queries.migrations("sqlite")[version:], start=version + 1):
        if NO_TRANSACTION in script:
            return number, script
        log.info("applying SQLite migration %d", number)
        _execute_all(conn, script)
        conn.execute(f"PRAGMA user_version={number}")
    return None


def _execute_all(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _set_version(conn: sqlite3.Connection, number: int) -> None:
    # Another process may have run the same migration meanwhile (harmless: it is
    # idempotent); the version moves on once.
    if conn.execute("PRAGMA user_version").fetchone()[0] == number - 1:
        conn.execute(f"PRAGMA user_version={number}")
