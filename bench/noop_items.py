"""(a) No-op items per second: a 100,000-item `echo` batch in one server process."""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import orjson
from common import BenchServer, wait_terminal


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    args = ap.parse_args()
    body = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(args.items))
    with BenchServer() as srv, srv.client() as c:
        t0 = time.perf_counter()
        r = c.post("/api/batches", params={"task": "echo", "parallelism": 100000},
                   content=body, headers={"Content-Type": "application/x-ndjson"})
        r.raise_for_status()
        b = wait_terminal(c, r.json()["id"])
        wall = time.perf_counter() - t0
        started = datetime.fromisoformat(b["started_at"].replace("Z", "+00:00"))
        finished = datetime.fromisoformat(b["finished_at"].replace("Z", "+00:00"))
        run_s = (finished - started).total_seconds()
        assert b["counts"]["succeeded"] == args.items, b["counts"]
        print(f"no-op items: {args.items:,} in {run_s:.2f} s of processing "
              f"-> {args.items / run_s:,.0f} items/s (server-recorded start to finish)")
        print(f"             submit to done: {wall:.2f} s -> {args.items / wall:,.0f} items/s")


if __name__ == "__main__":
    main()
