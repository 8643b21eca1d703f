"""(c) Time to accept a 100,000-item batch in one JSON request."""

from __future__ import annotations

import argparse
import time

import orjson
from common import BenchServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    items = [{"price": i % 1000 / 10, "quantity": i % 7 + 1, "tax": 0.1, "sku": f"SKU-{i}"}
             for i in range(args.items)]
    body = orjson.dumps({"task": "sales", "items": items})
    print(f"body: {len(body) / 1e6:.1f} MB, {args.items:,} items")
    # the worker is off so only acceptance is measured, not processing competing for the CPU
    with BenchServer(run_worker="false") as srv, srv.client() as c:
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = c.post("/api/batches", content=body, headers={"Content-Type": "application/json"})
            times.append(time.perf_counter() - t0)
            assert r.status_code == 201, r.text
            assert r.json()["counts"]["total"] == args.items
        print(f"accept {args.items:,} items in one request: best {min(times):.2f} s, "
              f"median {sorted(times)[len(times) // 2]:.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
