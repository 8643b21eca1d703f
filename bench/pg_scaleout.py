"""PostgreSQL scale-out: no-op items/s with 1, 2 and 4 worker processes, each one's CPU,
and `sales` end to end on PostgreSQL beside SQLite.

An API-only server (no worker inside) takes the batch; N `batchd worker` processes
share the database. The machine has 2 cores, so the CPU columns show where the time
goes once there are more processes than cores.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import orjson
import psutil
from common import (
    BenchServer,
    BenchWorker,
    drop_pg_database,
    fresh_pg_database,
    wait_terminal,
)
from sales_e2e import run as sales_run


def postgres_cpu_seconds() -> float:
    """CPU used so far by the PostgreSQL server's processes on this machine."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] and p.info["name"].startswith("postgres"):
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def seconds(b: dict[str, str], field: str) -> float:
    return datetime.fromisoformat(b[field].replace("Z", "+00:00")).timestamp()


def noop(items: int, workers: int) -> None:
    url = fresh_pg_database()
    body = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(items))
    try:
        with BenchServer(database_url=url, run_worker="false") as srv, srv.client() as c:
            procs = [BenchWorker(url) for _ in range(workers)]
            time.sleep(2.0)  # let the workers connect and start listening
            cpu0 = [p.cpu_seconds() for p in procs]
            api_cpu0 = srv.cpu_seconds()
            pg_cpu0 = postgres_cpu_seconds()
            r = c.post("/api/batches", params={"task": "echo", "parallelism": 100000},
                       content=body, headers={"Content-Type": "application/x-ndjson"})
            r.raise_for_status()
            b = wait_terminal(c, r.json()["id"], poll_s=0.1)
            assert b["counts"]["succeeded"] == items, b["counts"]
            run_s = seconds(b, "finished_at") - seconds(b, "started_at")
            cpu = [p.cpu_seconds() - c0 for p, c0 in zip(procs, cpu0, strict=True)]
            api_cpu = srv.cpu_seconds() - api_cpu0
            pg_cpu = postgres_cpu_seconds() - pg_cpu0
            for p in procs:
                p.stop()
        per = ", ".join(f"{c / run_s:.0%}" for c in cpu)
        print(f"postgres no-op, {workers} worker process(es): {items / run_s:>8,.0f} items/s "
              f"({items:,} items in {run_s:.2f} s); worker CPU {per} of a core each; "
              f"PostgreSQL {pg_cpu / run_s:.0%} of a core; API server {api_cpu:.1f} CPU-s in all")
    finally:
        drop_pg_database(url)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--sales-records", type=int, default=1_000_000)
    args = ap.parse_args()
    for n in args.workers:
        noop(args.items, n)
    if args.sales_records:
        url = fresh_pg_database()
        try:
            pg = sales_run(args.sales_records, 4, url)
        finally:
            drop_pg_database(url)
        lite = sales_run(args.sales_records, 4, None)
        for name, r in (("postgres", pg), ("sqlite", lite)):
            print(f"sales {args.sales_records:,} records on {name:8}: {r['rate']:>9,.0f} records/s "
                  f"end to end (processed at {r['done_s']:.1f} s, downloaded at "
                  f"{r['wall_s']:.1f} s), server peak RSS {r['peak_rss'] / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
