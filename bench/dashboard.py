"""The dashboard's server time with a big store: the batch list with 1,000,000 batches,
and the items page of a 1,000,000-item batch filtered to its failed items.

The data is written straight into a fresh SQLite file (bulk SQL, a minute at most), then
``batchd serve`` opens it and each page is fetched over HTTP on the loopback with a
signed-in session; the figures are the median and worst of the runs (target: < 200 ms).

    python bench/dashboard.py [--batches 1000000] [--items 1000000] [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchServer  # noqa: E402

from batchd.core.db import open_database  # noqa: E402
from batchd.domain.models import item_public_id  # noqa: E402

NOW = time.time()
BATCH_COLUMNS = """(id, tenant_id, owner, task, version, status, staging, records_per_item,
    priority, parallelism, fail_fast, max_error_pct, run_after, max_attempts,
    retry_backoff_s, metadata, n_total, n_succeeded, n_failed, r_total, r_succeeded,
    r_failed, actual_usd, created_at, started_at, closed_at, finished_at, dialect)"""


async def _tenant(url: str) -> str:
    db = open_database(url)
    await db.open()
    t = await db.ensure_tenant("default", tier="enterprise", now=NOW)
    await db.close()
    return t.id


def fill(path: Path, tenant_id: str, *, batches: int, items: int) -> str:
    """``batches`` finished batches, then one of ``items`` items (1 in 100 failed)."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    con.execute(f"""
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {batches})
        INSERT INTO batches {BATCH_COLUMNS}
        SELECT printf('bat_bench%015d', i), ?, 'admin', CASE i % 3 WHEN 0 THEN 'echo'
               WHEN 1 THEN 'sleep' ELSE 'fail' END, '1.0.0',
               CASE WHEN i % 10 = 0 THEN 'failed' WHEN i % 7 = 0 THEN 'partial'
                    ELSE 'completed' END, 0, 1, 50, 8, 0, 100.0, 0, 3, 1.0,
               CAST(printf('{{"project": "p%d", "run": %d}}', i % 97, i) AS BLOB),
               10, 9, 1, 10, 9, 1, 0.01, ? - ({batches} - i), ? - ({batches} - i),
               ? - ({batches} - i), ? - ({batches} - i) + 5,
               CASE WHEN i % 5 = 0 THEN 'spark' ELSE 'native' END
        FROM n""", (tenant_id, NOW, NOW, NOW, NOW))
    big = "bat_bench_big_items"
    fails = items // 100
    con.execute(f"""INSERT INTO batches {BATCH_COLUMNS} VALUES
        (?, ?, 'admin', 'echo', '1.0.0', 'partial', 0, 1, 50, 8, 0, 100.0, 0, 3, 1.0,
         NULL, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, 'native')""",
                (big, tenant_id, items, items - fails, fails, items, items - fails, fails,
                 NOW, NOW, NOW, NOW + 60))
    pk = con.execute("SELECT pk FROM batches WHERE id = ?", (big,)).fetchone()[0]
    con.execute(f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {items} - 1)
        INSERT INTO items (batch_pk, seq, rec0, n_records, status, attempts, fence, size,
                           error, started_at, finished_at)
        SELECT ?, i, i, 1, CASE WHEN i % 100 = 7 THEN 'failed' ELSE 'succeeded' END, 1, 1, 9,
               CASE WHEN i % 100 = 7 THEN CAST(printf(
                   '{{"code": "handler_error", "message": "upstream %s"}}',
                   CASE WHEN i % 200 = 7 THEN 'timed out' ELSE 'refused' END) AS BLOB) END,
               ? + i * 0.001, ? + i * 0.001 + 0.01
        FROM n""", (pk, NOW, NOW))
    con.execute("INSERT INTO item_inputs (id, data) SELECT id, CAST('{\"n\": 1}' AS BLOB) "
                "FROM items WHERE batch_pk = ?", (pk,))
    # The failed items' earlier attempts, as the engine records them (2 each).
    con.execute("""
        INSERT INTO item_attempts (item_id, attempt, outcome, error, worker, started_at,
                                   ended_at)
        SELECT id, a.n, 'retried', error, 'wrk_bench', started_at - 10 * (3 - a.n),
               started_at - 10 * (3 - a.n) + 0.01
        FROM items, (SELECT 1 AS n UNION ALL SELECT 2) AS a
        WHERE batch_pk = ? AND status = 'failed'""", (pk,))
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return big


def _failed_item(path: Path, batch_id: str) -> str:
    con = sqlite3.connect(path)
    rowid = con.execute("SELECT id FROM items WHERE batch_pk = (SELECT pk FROM batches "
                        "WHERE id = ?) AND seq = 5007", (batch_id,)).fetchone()[0]
    con.close()
    return item_public_id(rowid)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M")


def timed(c: httpx.Client, path: str, runs: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        r = c.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        size = len(r.content)
    return statistics.median(times), max(times), size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    path = Path(tempfile.mkdtemp(prefix="batchd-dash-")) / "dash.db"
    url = f"sqlite:///{path}"
    t0 = time.perf_counter()
    tenant = asyncio.run(_tenant(url))
    big = fill(path, tenant, batches=args.batches, items=args.items)
    print(f"store: {args.batches:,} batches and a {args.items:,}-item batch written in "
          f"{time.perf_counter() - t0:.0f} s ({path.stat().st_size / 1e9:.2f} GB)")
    with BenchServer(database_url=url, run_worker="false") as srv:
        c = httpx.Client(base_url=srv.url, timeout=120, follow_redirects=False)
        r = c.post("/ui/login", data={"key": srv.key, "next": "/ui/batches"})
        assert r.status_code == 303, r.text
        c.cookies = r.cookies
        first = c.get("/ui/batches")
        cursor = first.text.split("cursor=")[1].split('"')[0].split("&")[0]
        cases = [
            ("batch list, newest 50", "/ui/batches"),
            ("batch list, next page (cursor)", f"/ui/batches?cursor={cursor}"),
            ("batch list, status=failed", "/ui/batches?status=failed"),
            ("batch list, task=sleep", "/ui/batches?task=sleep"),
            ("batch list, dialect=spark (1 in 5)", "/ui/batches?dialect=spark"),
            ("batch list, search by id", "/ui/batches?q=bat_bench000000000500000"),
            ("batch list, created in a 1-hour range",
             f"/ui/batches?since={_iso(NOW - 7200)}&until={_iso(NOW - 3600)}"),
            ("batch list, metadata search (1 in 97)", '/ui/batches?q="p42"'),
            # No batch matches: every row of the tenant is read (a full scan).
            ("batch list, metadata search (no match)", "/ui/batches?q=nothing-like-it"),
            ("batch page of the 1M-item batch", f"/ui/batches/{big}"),
            ("items, status=failed", f"/ui/batches/{big}/items?status=failed"),
            ("items, status=failed, next page",
             f"/ui/batches/{big}/items?status=failed&cursor=s4907"),
            ("items, failed and error 'timed out'",
             f"/ui/batches/{big}/items?status=failed&error=timed+out"),
            ("a failed item and its attempts",
             f"/ui/batches/{big}/items/{_failed_item(path, big)}"),
        ]
        print(f"{'page':40} {'median ms':>10} {'worst ms':>9} {'bytes':>8}")
        for name, page in cases:
            med, worst, size = timed(c, page, args.runs)
            print(f"{name:40} {med:10.1f} {worst:9.1f} {size:8d}")


if __name__ == "__main__":
    main()
