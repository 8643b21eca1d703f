"""SQLite's group commit (store/sqlite/writer.py): writes that queue while one runs share
its transaction, each in a savepoint, and each caller hears back after the commit."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchd.domain import errors
from batchd.store.sqlite.connection import SqliteConnections

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteConnections]:
    conns = SqliteConnections(str(tmp_path / "g.db"))
    await conns.write(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    yield conns
    conns.shutdown()


def insert(conn: sqlite3.Connection, n: int) -> int:
    conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
    if n % 7 == 3:
        raise errors.InvalidInput(f"write {n} refused after its insert")
    return n


def slow(conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO t (n) VALUES (1000)")
    time.sleep(0.2)  # the others queue meanwhile
    return "slow"


async def test_writes_queued_behind_one_share_its_commit_and_fail_alone(
    db: SqliteConnections,
) -> None:
    before = db._writer.commits
    first = asyncio.ensure_future(db.write(slow))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*(db.write(insert, n) for n in range(30)),
                                   return_exceptions=True)
    assert await first == "slow"
    for n, r in enumerate(results):
        if n % 7 == 3:
            assert isinstance(r, errors.InvalidInput) and f"write {n}" in r.message
        else:
            assert r == n
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT n FROM t ORDER BY n")])
    assert rows == [n for n in range(30) if n % 7 != 3] + [1000]  # the refused rolled back
    # 31 writes, far fewer commits: all 30 queued behind the slow one.
    assert db._writer.commits - before <= 4


async def test_a_constraint_error_in_a_group_rolls_back_that_write_only(
    db: SqliteConnections,
) -> None:
    first = asyncio.ensure_future(db.write(slow))
    await asyncio.sleep(0.05)
    dup = db.write(lambda c: c.execute("INSERT INTO t (n) VALUES (1000)"))  # after slow's
    ok = db.write(insert, 1)
    got = await asyncio.gather(dup, ok, return_exceptions=True)
    await first
    assert isinstance(got[0], errors.Conflict) and got[1] == 1
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT n FROM t ORDER BY n")])
    assert rows == [1, 1000]


async def test_the_store_refuses_writes_once_shut_down(tmp_path: Path) -> None:
    conns = SqliteConnections(str(tmp_path / "c.db"))
    await conns.write(lambda c: c.execute("CREATE TABLE t (n)"))
    conns.shutdown()
    with pytest.raises(errors.StoreError, match="closed"):
        await conns.write(lambda c: None)


async def test_a_caller_that_gives_up_does_not_stop_the_writer(db: SqliteConnections) -> None:
    running = asyncio.ensure_future(db.write(slow))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(db.write(insert, 1))
    await asyncio.sleep(0.01)
    queued.cancel()  # still waiting in the queue: it is not run at all
    running.cancel()  # already running: it completes, its answer is dropped
    await asyncio.gather(running, queued, return_exceptions=True)
    assert await db.write(insert, 2) == 2  # the writer thread is alive
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT n FROM t ORDER BY n")])
    assert rows == [2, 1000]


async def test_a_failure_outside_any_write_fails_its_group_and_the_writer_goes_on(
    db: SqliteConnections, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = type(db._writer)._commit
    calls = []

    def broken(self: object, conn: sqlite3.Connection, done: list) -> None:  # type: ignore[type-arg]
        calls.append(len(done))
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        real(self, conn, done)  # type: ignore[arg-type]

    monkeypatch.setattr(type(db._writer), "_commit", broken)
    with pytest.raises(errors.StoreError, match="disk on fire"):
        await db.write(insert, 1)
    assert await db.write(insert, 2) == 2
    rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT n FROM t ORDER BY n")])
    assert rows == [2]  # the failed group was rolled back
