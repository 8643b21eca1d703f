"""Connections that outlive the database: the pool, outages, LISTEN, reconnects.

When PostgreSQL crashes or restarts, every connection a process holds dies: the
idle ones in the pool, the ones in use, the LISTEN connection. Nothing here gives
up for good. The first failure seen marks the database *down*: the pool's idle
connections are checked and the dead ones dropped at once (those in use go when
they fail), and while the database stays down a caller
waits at most ``outage_wait_s`` for a connection, so an API request gets a clear,
retryable error instead of hanging. The pool keeps reconnecting in the background
(a slot that fails for ``reconnect_s`` is dropped, and a new one is made on the
next demand, so a returning database is found within about a second); the first
statement that succeeds marks the database up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import psycopg.conninfo
import psycopg.sql
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from batchd.domain import errors

log = logging.getLogger(__name__)
T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
# SQLSTATE classes that say the server went away, not that a statement was wrong:
# 08 connection exception; 57P01-57P03 admin/crash shutdown, cannot connect now.
LOST_STATES = ("08", "57P")


def connection_lost(exc: BaseException) -> bool:
    """``exc`` says the connection died or the database could not be reached.

    Such a failure before COMMIT left nothing behind: the server rolls back the
    transaction of a connection it loses.
    """
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if isinstance(exc, PoolTimeout | PoolClosed | TooManyRequests):
        return False  # the pool's own state, not news from the database
    return exc.sqlstate is None or exc.sqlstate.startswith(LOST_STATES)


def describe(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
             pg_errors.LockNotAvailable)
# A connection that died while idle in the pool fails its first statement: the work
# goes to a fresh connection (up to this many times) before the caller hears of it.
STALE_RETRIES = 2


def translate(exc: Exception) -> Exception:
    """Driver errors at the store boundary → the core exception tree."""
    if isinstance(exc, errors.BatchdError):
        return exc
    if connection_lost(exc):
        return errors.StoreError("database unavailable (connection lost); retry later")
    if isinstance(exc, PoolTimeout):
        return errors.StoreError("database unavailable (no connection available); "
                                 "retry later")
    if isinstance(exc, ValueError) and "NUL" in str(exc):
        return errors.InvalidInput("text may not contain NUL (0x00) characters")
    if isinstance(exc, pg_errors.UniqueViolation):
        return errors.Conflict("conflicting write")
    if isinstance(exc, pg_errors.ProgramLimitExceeded):
        return errors.LimitExceeded(f"value too large to store: {_message(exc)}")
    if isinstance(exc, psycopg.DataError):
        return errors.InvalidInput(f"value not storable: {_message(exc)}")
    if isinstance(exc, psycopg.Error):
        return errors.StoreError(f"storage error: {type(exc).__name__}")
    return exc


def _message(exc: psycopg.Error) -> str:
    return exc.diag.message_primary or str(exc)


MAINTENANCE_DBS = ("postgres", "template1")  # where CREATE DATABASE can be run from


async def ensure_database(url: str, *, connect_timeout_s: int = 10) -> None:
    """Make sure the database of ``url`` can be connected to: create it when it does not
    exist and the role may (from a maintenance database); raise
    :class:`errors.StoreError`, one line naming the server and what to do, when it cannot."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=connect_timeout_s)
    except psycopg.OperationalError as exc:
        # The server says why only in its message (a connection error has no SQLSTATE):
        # whether the database exists is asked of a maintenance database instead.
        failure = exc
    else:
        await conn.close()
        return
    params = psycopg.conninfo.conninfo_to_dict(url)
    name = str(params.get("dbname") or params.get("user") or "")
    where = _where(params)
    for maintenance in MAINTENANCE_DBS:
        if maintenance == name:
            continue
        try:
            admin = await psycopg.AsyncConnection.connect(
                psycopg.conninfo.make_conninfo(url, dbname=maintenance), autocommit=True,
                connect_timeout=connect_timeout_s)
        except psycopg.OperationalError:
            continue
        async with admin:
            await _create_database(admin, name, where=where, failure=failure)
        return
    raise errors.StoreError(f"cannot connect to PostgreSQL at {where}: "
                            f"{_reason(failure)}") from None


async def _create_database(admin: Conn, name: str, *, where: str, failure: Exception) -> None:
    cur = await admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if await cur.fetchone() is not None:  # it exists: the first failure was something else
        raise errors.StoreError(f"cannot connect to database {name!r} on PostgreSQL at "
                                f"{where}: {_reason(failure)}")
    user = (await (await admin.execute("SELECT current_user")).fetchone() or ("?",))[0]
    try:
        await admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(
            psycopg.sql.Identifier(name)))
    except pg_errors.DuplicateDatabase:
        return  # another process created it meanwhile
    except pg_errors.InsufficientPrivilege:
        raise errors.StoreError(
            f"database {name!r} does not exist on PostgreSQL at {where}, and role {user!r} may "
            f"not create it: create it as a role that may (createdb {name}, or CREATE "
            f"DATABASE {name}; in psql), or grant this one CREATEDB") from None
    log.warning("created database %r on PostgreSQL at %s", name, where)


def _where(params: dict[str, Any]) -> str:
    host = params.get("host") or params.get("hostaddr") or "the local socket"
    return f"{host}:{params['port']}" if params.get("port") else str(host)


def _reason(exc: Exception) -> str:
    # psycopg's text: "connection failed: connection to server at …, port … failed: FATAL:
    # …": the part after the last "failed: " says why.
    text = "; ".join(" ".join(line.split()) for line in str(exc).splitlines() if line.strip())
    return text.rsplit("failed: ", 1)[-1] if "failed: " in text else text or type(exc).__name__


# A process stopped inside a transaction (SIGSTOP, a frozen VM) must not hold its locks,
# the reaper's among them, for longer than this: the server ends its session.
IDLE_TX_TIMEOUT_MS = 15_000

class PgConnections:
    """One process's connections to one database, and what it knows of its health.

    Args:
        url: ``postgresql://user@host:port/db``.
        min_size / max_size: pool size.
        acquire_timeout_s: how long a caller waits for a connection normally.
        outage_wait_s: how long it waits while the database is known to be down.
        reconnect_s: how long a pool slot retries its connection before it is dropped.
    """

    def __init__(
        self, url: str, *, min_size: int, max_size: int, acquire_timeout_s: float = 30.0,
        outage_wait_s: float = 1.0, reconnect_s: float = 2.0, connect_timeout_s: int = 10,
    ) -> None:
        self.url = url
        self.acquire_timeout_s = acquire_timeout_s
        self.outage_wait_s = outage_wait_s
        self.connect_timeout_s = connect_timeout_s
        self.pool = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, name="batchd",
            kwargs={"autocommit": True, "connect_timeout": connect_timeout_s,
                    "options": f"-c idle_in_transaction_session_timeout={IDLE_TX_TIMEOUT_MS}"},
            timeout=acquire_timeout_s, reconnect_timeout=reconnect_s,
            reconnect_failed=self._reconnect_failed,
        )
        self.down_since: float | None = None

    async def open(self, *, timeout_s: float = 30.0) -> None:
        """Open the pool, creating the database first if it is missing (and the role may).

        Raises:
            errors.StoreError: at once, in one line, when the database cannot be reached
                or created.
        """
        await ensure_database(self.url, connect_timeout_s=self.connect_timeout_s)
        await self.pool.open(wait=True, timeout=timeout_s)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; raises the driver's errors, and learns from them."""
        timeout = self.acquire_timeout_s if self.down_since is None else self.outage_wait_s
        try:
            async with self.pool.connection(timeout=timeout) as conn:
                yield conn
        except Exception as exc:
            if connection_lost(exc):
                await self.lost(describe(exc))
            elif isinstance(exc, psycopg.Error) and exc.sqlstate is not None:
                self.reachable()  # the server answered, if only to refuse
            raise
        self.reachable()

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` in one transaction, run again after a deadlock or serialization failure,
        or when its connection died before COMMIT (nothing was written then)."""
        return await self._retrying(fn, transaction=True)

    async def reading(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """A read (safe to repeat) outside a transaction."""
        return await self._retrying(fn, transaction=False)

    async def _retrying(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool) -> T:
        delay = 0.01
        stale = 0
        for attempt in range(10):
            committing = False
            try:
                async with self.connection() as conn:
                    if not transaction:
                        return await fn(conn)
                    async with conn.transaction():
                        result = await fn(conn)
                        committing = True
                    return result
            except RETRYABLE:
                if attempt == 9:
                    raise errors.StoreError("database is busy, retry later") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except (psycopg.Error, ValueError) as exc:
                # Lost before COMMIT: nothing was written, so it can go again. Lost in
                # COMMIT: nobody knows; the caller hears of it (retries are fenced).
                if connection_lost(exc) and not committing and stale < STALE_RETRIES:
                    stale += 1
                    continue
                raise translate(exc) from exc
        raise errors.StoreError("database is busy, retry later")

    async def lost(self, reason: str) -> None:
        """The database went away (or this connection did): drop the dead idle ones."""
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        log.warning("database connection lost (%s); reconnecting", reason)
        # Idle connections are likely as dead as this one: found now, not by callers.
        await self.pool.check()

    async def _reconnect_failed(self, pool: AsyncConnectionPool[Any]) -> None:
        # Seen by a process that had no connection to lose (all idle ones dropped).
        await self.lost(f"no connection for {pool.reconnect_timeout:g} s")

    def reachable(self) -> None:
        if self.down_since is not None:
            log.warning("database reachable again after %.1f s",
                        time.monotonic() - self.down_since)
            self.down_since = None

    async def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every NOTIFY on ``channel``, and after every (re)connect,
        since notifications sent while not listening are gone. Runs until cancelled."""
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=self.connect_timeout_s
                )
                async with conn:
                    await conn.execute(f"LISTEN {channel}")
                    delay = 0.1
                    # Not reachable(): the pool's own connections say when it is back.
                    callback()
                    async for _ in conn.notifies():
                        callback()
            except asyncio.CancelledError:
                raise
            except psycopg.OperationalError as exc:
                if connection_lost(exc):
                    await self.lost(describe(exc))  # often the first to know
                else:
                    log.warning("LISTEN failed (%s); reconnecting", describe(exc))
            except Exception:
                log.exception("LISTEN failed; reconnecting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
