"""Simulations dialect: 100 simulations of 50 ms each with parallel_jobs 10.

Ten at a time, 100 jobs of 50 ms ideally take 10 x 50 ms = 0.5 s. Prints the wall
time of each run (server-recorded, creation to completion, and as the client saw
it, submit to the poll that found it done) and its ratio to that ideal.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime
from typing import Any

import httpx
from common import BenchServer, drop_pg_database, fresh_pg_database

JOBS, PARALLEL, SLEEP_S = 100, 10, 0.05
IDEAL_S = JOBS / PARALLEL * SLEEP_S


def seconds_between(start: str, end: str) -> float:
    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def run_once(c: httpx.Client) -> tuple[float, float]:
    # The example task ``sleep`` as a template: it sleeps ``seconds`` (async).
    sims = [{"template_id": "sleep", "seconds": SLEEP_S, "entity_count": 1,
             "timepoint_count": 1}] * JOBS
    t0 = time.perf_counter()
    r = c.post("/simulations/batch", json={"simulations": sims, "parallel_jobs": PARALLEL})
    r.raise_for_status()
    batch_id = r.json()["batch_id"]
    while True:
        b: dict[str, Any] = c.get(f"/simulations/batch/{batch_id}").json()
        if b["status"] not in ("PENDING", "RUNNING"):
            break
        time.sleep(0.005)
    client_s = time.perf_counter() - t0
    assert b["status"] == "COMPLETED", b
    assert b["progress"]["completed_jobs"] == JOBS, b["progress"]
    return seconds_between(b["created_at"], b["completed_at"]), client_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--postgres", action="store_true", help="on a fresh local PostgreSQL db")
    args = ap.parse_args()
    url = fresh_pg_database() if args.postgres else None
    try:
        with BenchServer(database_url=url) as srv, httpx.Client(
            base_url=srv.url, timeout=60, headers={"X-API-Key": srv.key}  # enterprise tier
        ) as c:
            run_once(c)  # warm-up
            runs = [run_once(c) for _ in range(args.runs)]
    finally:
        if url:
            drop_pg_database(url)
    server = [s for s, _ in runs]
    client = [w for _, w in runs]
    print(f"simulations ({'PostgreSQL' if url else 'SQLite'}): {JOBS} jobs of "
          f"{SLEEP_S * 1000:.0f} ms, parallel_jobs {PARALLEL}, ideal {IDEAL_S:.2f} s; "
          f"{args.runs} runs")
    for name, values in (("server-recorded (created -> completed)", server),
                         ("client-observed (submit -> seen done)  ", client)):
        best, median = min(values), statistics.median(values)
        print(f"  {name}: best {best:.3f} s ({best / IDEAL_S:.2f}x ideal), "
              f"median {median:.3f} s ({median / IDEAL_S:.2f}x ideal)")


if __name__ == "__main__":
    main()
