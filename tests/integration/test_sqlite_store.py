"""SQLite-only checks of what the contract cannot see through the Store interface."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchd.core.db import Database
from batchd.domain import errors
from batchd.domain.models import BatchSpec
from batchd.domain.records import StagedItem
from batchd.store.sqlite import SqliteStore
from tests.conftest import scaled

NOW = 1_700_000_000.0

pytestmark = pytest.mark.timeout(scaled(30))


async def test_sqlite_rejected_append_leaves_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "batchd.db"
    store = Database(SqliteStore(f"sqlite:///{path}"))
    await store.open()
    try:
        t = await store.ensure_tenant("acme", tier="free", now=NOW)
        await store.create_batch(
            batch_id="bat_1", tenant_id=t.id, owner="alice",
            spec=BatchSpec(task="echo", version="1.0.0"), now=NOW,
        )
        await store.commit_stage("bat_1", f"{int(NOW)}-a", close=True, now=NOW)
        await store.stage_items("bat_1", f"{int(NOW)}-b", [StagedItem(1, b'{"n": 1}', 0.0)] * 2)

        with pytest.raises(errors.Conflict):
            await store.commit_stage("bat_1", f"{int(NOW)}-b", close=False, now=NOW)
    finally:
        await store.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM item_inputs").fetchone()[0] == 0
