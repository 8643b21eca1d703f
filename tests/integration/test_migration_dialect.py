"""Migration 12 on both backends: the batches made before it get the dialect that made
them, found in what each dialect leaves in a batch (its task or its metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import scaled
from tests.support import old_schema

pytestmark = pytest.mark.timeout(scaled(30))

NOW = 1_700_000_000.0
BEFORE = 11  # the last migration without batches.dialect
# id, task, metadata, the dialect migration 12 finds
BATCHES: list[tuple[str, str, object, str]] = [
    ("bat_native", "echo", {"project": "x"}, "native"),
    ("bat_nometa", "echo", None, "native"),
    ("bat_sim", "simulation", {}, "simulations"),
    ("bat_ai", "aibatch", {"source": "aibatch"}, "aibatch"),
    ("bat_spark", "stocks/NVDA", {"spark": {"call_purpose": "x"}}, "spark"),
    ("bat_runs", "shout", {"taskruns": {}}, "taskruns"),
    ("bat_oai", "model_request", {"v1": {"dialect": "openai", "id": "batch_1"}}, "openai"),
    ("bat_ant", "model_request", {"v1": {"dialect": "anthropic", "id": "msgbatch_1"}},
     "anthropic"),
]
INSERT = ("INSERT INTO batches (id, tenant_id, owner, task, version, status, staging, "
          "records_per_item, priority, parallelism, fail_fast, max_error_pct, run_after, "
          "max_attempts, retry_backoff_s, metadata, created_at) VALUES ({p}, 'ten_a', 'o', {p}, "
          "'1', 'completed', {no}, 1, 50, 8, {no}, 100.0, 0, 3, 1.0, {p}, {p})")


def rows() -> list[tuple[object, ...]]:
    return [(bid, task, None if meta is None else orjson.dumps(meta), NOW)
            for bid, task, meta, _ in BATCHES]


def fill(cur: Any, p: str) -> None:
    cur.executemany(INSERT.format(p=p, no="0" if p == "?" else "false"), rows())


@pytest.mark.parametrize("backend", old_schema.BACKENDS)
async def test_migration_12_finds_the_dialect_of_every_batch(
    backend: str, tmp_path: Path
) -> None:
    async with old_schema.old_database(backend, tmp_path, BEFORE, fill) as store:
        for bid, _, _, dialect in BATCHES:
            b = await store.get_batch(bid, tenant_id=None)
            assert b is not None and b.dialect == dialect, (bid, b and b.dialect)
