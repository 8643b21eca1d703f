"""CSV export rate of a task batch run of N completed runs, and the server's peak RSS.

A first server creates the runs (``POST /v0/tasks/bench_profile/batches``, one batch of
``--runs`` runs, plus a small one) and runs them; a second server on the same
database, without a worker, then exports both batches with
``GET …/export?format=csv`` (and JSON) while its RSS is sampled, so the figure is the
export's alone and the two sizes show whether memory grows with the rows.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
import orjson
import psutil
from common import BenchServer, drop_pg_database, fresh_pg_database, mb, timed_download

TASK = "bench_profile"


def create(c: httpx.Client, n: int) -> dict[str, Any]:
    runs = [{"arguments": {"company": f"Company {i}", "n": i}} for i in range(n)]
    body = orjson.dumps({"task_run_requests": runs, "runner": "neon"})
    r = c.post(f"/v0/tasks/{TASK}/batches", content=body,
               headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_complete(c: httpx.Client, batch_id: str) -> None:
    while True:
        b = c.get(f"/api/batches/{batch_id}").json()
        if b["status"] not in ("open", "closed"):
            assert b["status"] == "completed", b
            return
        time.sleep(0.5)


def export(c: httpx.Client, batch_id: str, fmt: str, pid: int) -> tuple[float, int, int, int]:
    """Seconds to the last byte, bytes, lines, peak RSS of the server meanwhile."""
    return timed_download(c, f"/v0/tasks/{TASK}/batches/{batch_id}/export", {"format": fmt},
                          pid)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres", action="store_true", help="on a fresh PostgreSQL database")
    args = ap.parse_args()
    pg_url = fresh_pg_database() if args.postgres else None
    try:
        run(args, pg_url)
    finally:
        if pg_url:
            drop_pg_database(pg_url)


def run(args: argparse.Namespace, pg_url: str | None) -> None:
    # Taskruns batches take BATCHD_DEFAULT_PARALLELISM: high, so the inline runs go fast.
    # The million runs go in one JSON request (~46 MB): past the default JSON body limit
    # of 32 MiB, which this bench (of export, not of intake) raises for its maker server.
    with BenchServer(database_url=pg_url, tasks="bench.export_tasks",
                     default_parallelism=100_000,
                     max_json_body_bytes=256 << 20) as maker, maker.client() as c:
        t0 = time.perf_counter()
        big = create(c, args.runs)
        small = create(c, args.small)
        wait_complete(c, big["batch_run_id"])
        wait_complete(c, small["batch_run_id"])
        print(f"{args.runs:,} + {args.small:,} runs created and run in "
              f"{time.perf_counter() - t0:.0f} s")
        database_url = maker.database_url
    with BenchServer(database_url=database_url, tasks="bench.export_tasks",
                     run_worker="false") as srv, srv.client() as c:
        assert srv.proc is not None
        pid = srv.proc.pid
        idle = psutil.Process(pid).memory_info().rss
        print(f"export server idle RSS: {mb(idle)}")
        for label, batch, n in (("small", small, args.small), ("large", big, args.runs)):
            for fmt in ("csv", "json"):
                best = None
                for _ in range(args.repeat):
                    seconds, size, lines, peak = export(c, batch["batch_run_id"], fmt, pid)
                    if fmt == "csv":
                        assert lines == n + 1, (lines, n)
                    if best is None or seconds < best[0]:
                        best = (seconds, size, peak)
                    print(f"  {fmt} {n:,} runs: {seconds:.2f} s, {n / seconds:,.0f} rows/s, "
                          f"{size / 1e6:.0f} MB, server peak RSS {mb(peak)}")
                assert best is not None
                print(f"{label} {fmt}: best {n / best[0]:,.0f} rows/s "
                      f"({n:,} runs in {best[0]:.2f} s), peak RSS {mb(best[2])}")


if __name__ == "__main__":
    main()
