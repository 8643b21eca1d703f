"""`batchd submit sales data.csv --wait` of a 200,000-row CSV: seconds to done with no
flags (records per item chosen by the engine) beside the best `--records-per-item`.

The real CLI (`batchd submit … --wait`, a subprocess) against a real server on a fresh
database for every run: SQLite (`batchd serve`, its own worker) and PostgreSQL (an
API-only server and two `batchd worker` processes). The time is the command's, from
start to exit: upload, run and the wait's last poll. Target: no flags within 1.5x of
the best setting.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BenchServer, BenchWorker, drop_pg_database, fresh_pg_database

TARGET = 1.5


def write_csv(path: Path, rows: int) -> None:
    rnd = random.Random(7)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["price", "quantity", "tax"])
        for _ in range(rows):
            w.writerow([rnd.randint(100, 99999) / 100, rnd.randint(1, 50),
                        rnd.choice([0, 0.05, 0.1])])


def batchd_command() -> list[str]:
    script = Path(sys.executable).parent / "batchd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "batchd.cli.main"]


def submit(srv: BenchServer, data: Path, rpi: int | None) -> tuple[float, dict[str, object]]:
    """Seconds for `batchd submit sales DATA --wait [--records-per-item RPI]`; the batch."""
    args = [*batchd_command(), "submit", "sales", str(data), "--wait"]
    if rpi is not None:
        args += ["--records-per-item", str(rpi)]
    env = {**os.environ, "BATCHD_URL": srv.url, "BATCHD_API_KEY": srv.key}
    t0 = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"batchd submit failed: {done.stderr[-2000:]}")
    batch_id = done.stdout.strip().splitlines()[-1]
    with srv.client() as c:
        batch = c.get(f"/api/batches/{batch_id}").json()
    return seconds, batch


def run_sqlite(data: Path, rpi: int | None) -> tuple[float, dict[str, object]]:
    with BenchServer() as srv:
        return submit(srv, data, rpi)


def run_postgres(data: Path, rpi: int | None, workers: int) -> tuple[float, dict[str, object]]:
    url = fresh_pg_database()
    try:
        with BenchServer(database_url=url, run_worker="false") as srv:
            procs = [BenchWorker(url) for _ in range(workers)]
            try:
                time.sleep(2.0)  # let the workers connect and start listening
                return submit(srv, data, rpi)
            finally:
                for p in procs:
                    p.stop()
    finally:
        drop_pg_database(url)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--records-per-item", type=int, nargs="*", default=[250, 1000, 5000, 20000],
                    help="explicit settings to compare with no flag")
    ap.add_argument("--backends", nargs="*", default=["sqlite", "postgres"])
    ap.add_argument("--workers", type=int, default=2, help="batchd worker processes (PostgreSQL)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sales.csv"
        write_csv(data, args.rows)
        print(f"{args.rows:,}-row CSV ({data.stat().st_size / 1e6:.1f} MB) to the vectorised "
              f"`sales` task with `batchd submit … --wait`")
        for backend in args.backends:
            where = ("SQLite, batchd serve" if backend == "sqlite" else
                     f"PostgreSQL, API server + {args.workers} batchd worker")
            times: dict[int | None, float] = {}
            for rpi in [None, *args.records_per_item]:
                if backend == "sqlite":
                    seconds, b = run_sqlite(data, rpi)
                else:
                    seconds, b = run_postgres(data, rpi, args.workers)
                assert b["status"] == "completed", b
                times[rpi] = seconds
                flag = "no flag" if rpi is None else f"--records-per-item {rpi}"
                print(f"  {where:<42} {flag:<28} {seconds:7.1f} s  "
                      f"({b['counts']['total']:,} items of {b['records_per_item']:,})",  # type: ignore[index]
                      flush=True)
            explicit = {k: v for k, v in times.items() if k is not None}
            best = min(explicit, key=lambda k: explicit[k]) if explicit else None
            if best is not None:
                ratio = times[None] / explicit[best]
                verdict = "within" if ratio <= TARGET else "NOT within"
                print(f"  {where}: no flag {times[None]:.1f} s, best --records-per-item "
                      f"{best} {explicit[best]:.1f} s: {ratio:.2f}x ({verdict} {TARGET}x)")


if __name__ == "__main__":
    main()
