"""(c) Time to accept a 100,000-item batch in one JSON request.

    .venv/bin/python bench/accept_batch.py [--items 100000] [--runs 3] [--ndjson] [--postgres]

``--ndjson`` also times the same items sent as NDJSON, in one request that creates the
batch and in one ``POST /api/batches/{id}/items`` to an open batch.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import httpx
import orjson
from common import BenchServer, drop_pg_database, fresh_pg_database

NDJSON = {"Content-Type": "application/x-ndjson"}


def timed(label: str, n: int, runs: int, send: Callable[[], httpx.Response]) -> None:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = send()
        times.append(time.perf_counter() - t0)
        assert r.status_code in (200, 201), r.text
    print(f"{label} {n:,} items in one request: best {min(times):.2f} s, "
          f"median {sorted(times)[len(times) // 2]:.2f} s over {runs} runs")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ndjson", action="store_true", help="also as NDJSON (create, append)")
    ap.add_argument("--postgres", action="store_true", help="on a fresh local PostgreSQL db")
    args = ap.parse_args()
    items = [{"price": i % 1000 / 10, "quantity": i % 7 + 1, "tax": 0.1, "sku": f"SKU-{i}"}
             for i in range(args.items)]
    # One record an item (the sales task's default packs 1,000 records into an item).
    body = orjson.dumps({"task": "sales", "records_per_item": 1, "items": items})
    lines = b"".join(orjson.dumps(i) + b"\n" for i in items)
    print(f"body: {len(body) / 1e6:.1f} MB, {args.items:,} items "
          f"({'PostgreSQL' if args.postgres else 'SQLite'})")
    url = fresh_pg_database() if args.postgres else None
    try:
        # the worker is off so only acceptance is measured, not processing competing for the CPU
        with BenchServer(database_url=url, run_worker="false") as srv, srv.client() as c:
            def create() -> httpx.Response:
                r = c.post("/api/batches", content=body,
                           headers={"Content-Type": "application/json"})
                assert r.json()["counts"]["total"] == args.items, r.text
                return r

            timed("accept", args.items, args.runs, create)
            if not args.ndjson:
                return
            timed("accept NDJSON", args.items, args.runs, lambda: c.post(
                "/api/batches", params={"task": "sales", "records_per_item": 1}, content=lines,
                headers=NDJSON))
            open_id = c.post("/api/batches", json={"task": "sales", "records_per_item": 1,
                                                  "close": False}).json()["id"]
            timed("append NDJSON", args.items, args.runs, lambda: c.post(
                f"/api/batches/{open_id}/items", content=lines, headers=NDJSON))
    finally:
        if url:
            drop_pg_database(url)


if __name__ == "__main__":
    main()
