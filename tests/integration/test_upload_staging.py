"""Where an upload waits until its commit, and what a discarded one leaves on disk.

Over every backend (the contract suite's ``store`` fixture): a discarded upload's space
goes back to the filesystem once the store reclaims it, and a commit refuses an upload
the database lost part of (PostgreSQL empties its unlogged stage when it restarts).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from batchd.core.db import Database
from batchd.domain import errors
from batchd.domain.models import BatchSpec
from batchd.domain.records import StagedItem
from batchd.store import queries
from batchd.store.base import Store
from batchd.store.postgres import PostgresStore
from batchd.store.sqlite import SqliteStore
from tests.conftest import scaled
from tests.integration import test_store_contract as contract
from tests.integration.test_store_contract import NOW, MakeBatch, fetch, stage_token

store = contract.store  # the contract suite's fixture: every backend
make_batch = contract.make_batch

pytestmark = pytest.mark.timeout(scaled(60))
SPEC = BatchSpec(task="echo", version="1.0.0")
ITEM = StagedItem(1, orjson.dumps({"p": "x" * 200}), 0.0)


def _driver(store: Store) -> Store:
    assert isinstance(store, Database)
    return store.store


def db_bytes(store: Store) -> int:
    """SQLite: the file and its WAL; PostgreSQL: ``pg_database_size``."""
    driver = _driver(store)
    if isinstance(driver, SqliteStore):
        path = Path(driver.db.path)
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    import psycopg

    assert isinstance(driver, PostgresStore)
    with psycopg.connect(driver.url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def lose_staged_rows(store: Store) -> None:
    """What a PostgreSQL restart does to an upload in progress (SQLite never loses one:
    the test takes a row away by hand)."""
    driver = _driver(store)
    if isinstance(driver, SqliteStore):
        with sqlite3.connect(driver.db.path) as conn:
            conn.execute("DELETE FROM items WHERE id = (SELECT MAX(id) FROM items)")
        return
    import psycopg

    assert isinstance(driver, PostgresStore)
    with psycopg.connect(driver.url, autocommit=True) as conn:
        conn.execute("TRUNCATE item_stage, item_stage_inputs")


async def test_upload_staging_discard_gives_the_space_back(
    store: Store, make_batch: MakeBatch
) -> None:
    live = await make_batch(items=100, close=False)
    before = db_bytes(store)
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    await store.create_batch(batch_id="bat_refused", tenant_id=t.id, owner="alice",
                             spec=SPEC, now=NOW)
    created, appended = stage_token(NOW), stage_token(NOW)
    for _ in range(20):  # about 20 MB in all
        await store.stage_items("bat_refused", created, [ITEM] * 2500)
        await store.stage_items(live.id, appended, [ITEM] * 2500)
    assert db_bytes(store) > before + 10_000_000  # it was on disk

    await store.discard_stage("bat_refused", created, drop_batch=True)
    await store.discard_stage(live.id, appended, drop_batch=False)
    await store.reclaim_space()

    after = db_bytes(store)
    assert after <= before * 1.05, f"{before:,} bytes before, {after:,} after"
    assert (await fetch(store, live.id)).n_total == 100
    with pytest.raises(errors.NotFound):
        await store.commit_stage("bat_refused", created, close=True, now=NOW)


async def test_upload_staging_commit_moves_the_upload_and_empties_the_stage(
    store: Store, make_batch: MakeBatch
) -> None:
    live = await make_batch(items=2, close=False)
    token = stage_token(NOW)
    await store.stage_items(live.id, token, [ITEM] * 3000)
    before = db_bytes(store)
    await store.commit_stage(live.id, token, close=True, now=NOW + 1, staged_items=3000)
    await store.reclaim_space()

    batch = await fetch(store, live.id)
    assert (batch.n_total, batch.n_queued, batch.status) == (3002, 3002, "closed")
    items = await store.list_items(live.id, status=None, after_seq=1, limit=5)
    assert [i.seq for i in items] == [2, 3, 4, 5, 6]
    # The copy in the stage is gone: the items are on disk once, not twice.
    assert db_bytes(store) <= before * 1.3


async def test_upload_staging_commit_refuses_a_partly_lost_upload(store: Store) -> None:
    t = await store.ensure_tenant("acme", tier="free", now=NOW)
    await store.create_batch(batch_id="bat_lost", tenant_id=t.id, owner="alice", spec=SPEC,
                             now=NOW)
    token = stage_token(NOW)
    await store.stage_items("bat_lost", token, [ITEM] * 3)
    lose_staged_rows(store)

    with pytest.raises(errors.StoreError, match="send it again"):
        await store.commit_stage("bat_lost", token, close=True, now=NOW, staged_items=3)
    with pytest.raises(errors.NotFound):  # discarded with its batch: nothing half-made
        await store.commit_stage("bat_lost", token, close=True, now=NOW)


def test_upload_staging_sqlite_migration_turns_on_incremental_vacuum(tmp_path: Path) -> None:
    """A database made before migration 7 is switched over (one VACUUM), data intact."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for number, script in enumerate(queries.migrations("sqlite")[:6], start=1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute("INSERT INTO tenants (id, name, tier, created_at) "
                     "VALUES ('ten_1', 'acme', 'free', 0)")
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0

    async def open_and_close() -> None:
        s = SqliteStore(f"sqlite:///{path}")
        await s.open()
        await s.close()

    asyncio.run(open_and_close())
    asyncio.run(open_and_close())  # a second open finds nothing left to do
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(
            queries.migrations("sqlite"))
        assert conn.execute("SELECT name FROM tenants").fetchall() == [("acme",)]
