"""SQLite's one writer thread, with group commit.

Every write transaction of the process goes through one thread (SQLite has one writer
anyway). Writes that queue up while one runs share its transaction: each runs inside
a savepoint of its own, so one that fails rolls back alone, and all of them are
answered after the one COMMIT, so each caller still hears back only once its write is
durable. A burst of small writes (single-job enqueues, appends, claims, outcomes) so
costs one commit instead of one each; a lone write costs what it did.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from batchd.domain import errors

log = logging.getLogger(__name__)

# A group takes writes while it is younger than this and smaller than this many: a
# write queued behind a long one is not held back long.
GROUP_MAX_S = 0.005
GROUP_MAX_WRITES = 64
BUSY_ATTEMPTS = 20


def is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


@dataclass(slots=True)
class Write:
    """One caller's write: ``fn(conn)`` inside a transaction, or outside any (``bare``)."""

    fn: Callable[[sqlite3.Connection], Any]
    bare: bool = False
    future: Future[Any] = field(default_factory=Future)
    attempts: int = 0
    started: bool = False

    def start(self) -> bool:
        """Mark it running; False if its caller gave up on it first (then it is not run:
        a cancelled future takes no result)."""
        if not self.started:
            self.started = True
            return self.future.set_running_or_notify_cancel()
        return True


def begin(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``: the write lock now, waiting out another process that holds it."""
    delay = 0.01
    for attempt in range(BUSY_ATTEMPTS):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            # busy_timeout already waited; another process holds the lock long.
            if not is_busy(exc) or attempt == BUSY_ATTEMPTS - 1:
                raise errors.StoreError("database is busy, retry later") from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    """``fn(conn)`` in a transaction of its own: committed, or rolled back and raised."""
    begin(conn)
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


class GroupWriter:
    """Runs :class:`Write` s on one thread, grouping those that wait into one commit.

    Args:
        connect: opens the writer's connection (called on the thread, once).
        translate: turns a driver error into the engine's error for the caller.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 translate: Callable[[BaseException], BaseException]) -> None:
        self._connect = connect
        self._translate = translate
        self._queue: queue.SimpleQueue[Write | None] = queue.SimpleQueue()
        self._closed = False
        self._members: list[Write] = []  # the writes of the group being run
        self.commits = 0  # group commits made (for tests and metrics)
        self._thread = threading.Thread(target=self._run, name="batchd-sqlite-w", daemon=True)
        self._thread.start()

    def submit(self, write: Write) -> Future[Any]:
        if self._closed:
            raise errors.StoreError("the store is closed")
        self._queue.put(write)
        return write.future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        conn = self._connect()
        carry: Write | None = None
        while True:
            write = carry or self._queue.get()
            carry = None
            if write is None:
                return
            if not write.start():
                continue
            if write.bare:
                self._answer(write, lambda w=write: w.fn(conn))  # type: ignore[misc]
                continue
            try:
                carry = self._group(conn, write)
            except Exception as exc:  # the thread must outlive any one failure
                log.exception("SQLite write group failed")
                self._abandon(conn, exc)

    def _abandon(self, conn: sqlite3.Connection, exc: Exception) -> None:
        """After a failure outside any one write (the connection's own): roll back, and
        fail every write of the group still waiting for its answer."""
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        for write in self._members:
            if not write.future.done():
                write.future.set_exception(errors.StoreError(f"storage error: {exc}"))
        self._members = []

    def _answer(self, write: Write, call: Callable[[], Any]) -> None:
        try:
            write.future.set_result(call())
        except BaseException as exc:  # the caller gets it
            write.future.set_exception(self._translate(exc))

    def _group(self, conn: sqlite3.Connection, first: Write) -> Write | None:
        """Run ``first`` and the writes queued meanwhile in one transaction; returns a
        write taken from the queue that could not join (bare, or the stop signal)."""
        try:
            begin(conn)
        except errors.StoreError as exc:
            first.future.set_exception(exc)
            return None
        done: list[tuple[Write, Any]] = []
        retry: list[Write] = []
        started = time.monotonic()
        write: Write | None = first
        self._members = []
        while write is not None:
            if write.start():
                self._members.append(write)
                self._one(conn, write, done, retry)
            if len(done) + len(retry) >= GROUP_MAX_WRITES or (
                    time.monotonic() - started > GROUP_MAX_S):
                write = None
                break
            try:
                write = self._queue.get_nowait()
            except queue.Empty:
                write = None
                break
            if write is None:  # stop: after this group, as the last thing
                self._queue.put(None)
                break
            if write.bare:
                break
        self._commit(conn, done)
        for w in retry:  # busy inside the transaction: again, after a pause
            time.sleep(0.01 * w.attempts)
            self._queue.put(w)
        return write

    def _one(self, conn: sqlite3.Connection, write: Write, done: list[tuple[Write, Any]],
             retry: list[Write]) -> None:
        conn.execute("SAVEPOINT w")
        try:
            result = write.fn(conn)
        except BaseException as exc:
            conn.execute("ROLLBACK TO w")
            conn.execute("RELEASE w")
            write.attempts += 1
            if is_busy(exc) and write.attempts < BUSY_ATTEMPTS:
                retry.append(write)
            else:
                write.future.set_exception(self._translate(exc))
            return
        conn.execute("RELEASE w")
        done.append((write, result))

    def _commit(self, conn: sqlite3.Connection, done: list[tuple[Write, Any]]) -> None:
        try:
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning("group commit of %d writes failed (%s); each runs again alone",
                        len(done), exc)
            for write, _ in done:
                self._alone(conn, write)
            return
        self.commits += 1
        for write, result in done:
            write.future.set_result(result)

    def _alone(self, conn: sqlite3.Connection, write: Write) -> None:
        self._answer(write, lambda: transaction(conn, write.fn))
