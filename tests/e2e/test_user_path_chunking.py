"""Records per item fit the task by default (issue 14, point 2): a vectorised task gets
items of many records, sized by records and bytes; a per-record task one record per
item; an explicit ``records_per_item`` (API, CLI) always wins."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchd.core import chunking
from tests.conftest import Server, scaled, wait_batch

pytestmark = pytest.mark.timeout(scaled(240))

NDJSON = {"Content-Type": "application/x-ndjson"}


def sales_rows(n: int, *, note: int = 0) -> list[dict[str, Any]]:
    rnd = random.Random(n)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"price": rnd.randint(100, 9999) / 100,
                               "quantity": rnd.randint(1, 9), "tax": 0.1}
        if note:
            row["note"] = f"{i:08d}" + "x" * (note - 8)
        rows.append(row)
    return rows


def total(r: dict[str, Any]) -> float:
    return round(r["price"] * r["quantity"] * (1 + r["tax"]), 2)


def ndjson(rows: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def results(c: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in
            c.get(f"/api/batches/{batch_id}/results").content.splitlines()]


def create(c: httpx.Client, rows: list[Any], **params: Any) -> dict[str, Any]:
    r = c.post("/api/batches", params=params, content=ndjson(rows), headers=NDJSON)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_vectorised_task_gets_items_of_many_records_by_default(server: Server) -> None:
    rows = sales_rows(25_000)
    with server.client() as c:
        b = create(c, rows, task="sales")
        assert b["records_per_item"] == chunking.TARGET_RECORDS
        assert (b["records"]["total"], b["counts"]["total"]) == (25_000, 25)
        done = wait_batch(c, b["id"])
        assert (done["status"], done["records"]["succeeded"]) == ("completed", 25_000)
        got = results(c, b["id"])
    assert [r["output"]["total"] for r in got] == [total(r) for r in rows]


def test_small_batch_is_spread_over_several_items(server: Server) -> None:
    with server.client() as c:
        b = c.post("/api/batches", json={"task": "sales", "items": sales_rows(500)}).json()
        assert (b["records_per_item"], b["counts"]["total"]) == (32, 16)
        assert wait_batch(c, b["id"])["records"]["succeeded"] == 500


def test_large_records_make_smaller_items(server: Server) -> None:
    # 20 KB rows: a thousand would be a 20 MB item; about a megabyte's worth go together.
    rows = sales_rows(1000, note=20_000)
    with server.client() as c:
        b = create(c, rows, task="sales")
        rpi = b["records_per_item"]
        assert 1 < rpi < 100
        assert rpi * 20_000 <= chunking.TARGET_ITEM_BYTES
        done = wait_batch(c, b["id"])
        assert (done["status"], done["records"]["succeeded"]) == ("completed", 1000)
        got = results(c, b["id"])
    assert [r["input"]["note"][:8] for r in got] == [f"{i:08d}" for i in range(1000)]


def test_explicit_records_per_item_wins_and_per_record_tasks_get_one(server: Server) -> None:
    with server.client() as c:
        one = create(c, sales_rows(300), task="sales", records_per_item=1)
        assert (one["records_per_item"], one["counts"]["total"]) == (1, 300)
        many = create(c, sales_rows(300), task="sales", records_per_item=250)
        assert (many["records_per_item"], many["counts"]["total"]) == (250, 2)
        per_record = create(c, [{"i": i} for i in range(300)], task="echo")
        assert (per_record["records_per_item"], per_record["counts"]["total"]) == (1, 300)
        # Appends to an open batch keep the size its first upload chose.
        open_ = create(c, sales_rows(20_000), task="sales", close="false")
        assert open_["records_per_item"] == chunking.TARGET_RECORDS
        r = c.post(f"/api/batches/{open_['id']}/items", content=ndjson(sales_rows(3000)),
                   headers=NDJSON)
        assert r.status_code == 200, r.text
        assert (r.json()["counts"]["total"], r.json()["records"]["total"]) == (23, 23_000)


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATCHD_URL": server.url, "BATCHD_API_KEY": server.admin_key,
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "batchd.cli.main", *args], env=env,
                          cwd=server.log_path.parent, capture_output=True, text=True,
                          timeout=scaled(180))


def test_cli_submit_of_a_csv_chunks_by_default_and_takes_the_flag(
    server: Server, tmp_path: Path,
) -> None:
    data = tmp_path / "sales.csv"
    rows = sales_rows(30_000)
    with data.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["price", "quantity", "tax"])
        w.writeheader()
        w.writerows(rows)
    done = cli(server, "submit", "sales", str(data), "--wait")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.strip().splitlines()[-1]
    flagged = cli(server, "submit", "sales", str(data), "--records-per-item", "5000")
    assert flagged.returncode == 0, flagged.stderr
    with server.client() as c:
        b = c.get(f"/api/batches/{batch_id}").json()
        assert (b["status"], b["records"]["succeeded"]) == ("completed", 30_000)
        assert (b["records_per_item"], b["counts"]["total"]) == (chunking.TARGET_RECORDS, 30)
        f = c.get(f"/api/batches/{flagged.stdout.strip().splitlines()[-1]}").json()
        assert (f["records_per_item"], f["counts"]["total"]) == (5000, 6)
