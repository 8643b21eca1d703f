"""`sales` records/s end to end through the Spark dialect, and the server's peak RSS.

1,000,000 records in 1,000-record chunks (tables with a header row, ``tax`` as a
parameter) are pushed by 4 concurrent client threads, several chunks per request,
retrying when the input buffer is full (429), while one thread pulls ``chunkresults``
until every chunk came back; the batch is then closed. Default buffers (70 MB in,
80 MB out).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from typing import Any

import orjson
from common import BenchServer, mb

BASE = "/default/api/v4/batch"  # the bench server's admin key is in tenant "default"


def chunk_body(first_chunk: int, n_chunks: int, size: int, rows: list[list[Any]]) -> bytes:
    chunks = []
    for k in range(first_chunk, first_chunk + n_chunks):
        start = k * size
        table: list[list[Any]] = [["sale_id", "price", "quantity"]]
        table += [[start + i, p, q] for i, (p, q) in enumerate(rows)]
        chunks.append({"id": f"chunk-{k}", "data": {"inputs": table,
                                                   "parameters": {"tax": 0.1}}})
    return orjson.dumps({"chunks": chunks})


def run(records: int, *, size: int, threads: int, per_request: int, service: str,
        key: str | None) -> dict[str, float]:
    rnd = random.Random(7)
    rows = [[rnd.randint(100, 99999) / 100, rnd.randint(1, 50)] for _ in range(size)]
    n_chunks = records // size
    with BenchServer() as srv, srv.client() as c:
        t0 = time.perf_counter()
        r = c.post(BASE, json={"service": service, "unique_record_key": key})
        r.raise_for_status()
        bid = r.json()["id"]
        starts = list(range(0, n_chunks, per_request))
        shares = [starts[i::threads] for i in range(threads)]
        errors: list[BaseException] = []
        rejected = [0]

        def push(mine: list[int]) -> None:
            try:
                with srv.client() as cc:
                    for first in mine:
                        body = chunk_body(first, min(per_request, n_chunks - first), size, rows)
                        while True:
                            rr = cc.post(f"{BASE}/{bid}/chunks", content=body,
                                         headers={"Content-Type": "application/json"})
                            if rr.status_code != 429:
                                rr.raise_for_status()
                                break
                            rejected[0] += 1
                            time.sleep(0.02)  # input buffer full: let the pipeline drain it
            except BaseException as exc:  # reported below
                errors.append(exc)

        pulled = {"chunks": 0, "records": 0}

        def pull() -> None:
            try:
                with srv.client() as cc:
                    while pulled["chunks"] < n_chunks and not errors:
                        rr = cc.get(f"{BASE}/{bid}/chunkresults", params={"max": 100})
                        rr.raise_for_status()
                        data = orjson.loads(rr.content).get("data")
                        if not data:
                            time.sleep(0.01)
                            continue
                        for ch in data:
                            pulled["chunks"] += 1
                            pulled["records"] += len(ch["outputs"]) - 1  # header row
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=push, args=(s,)) for s in shares]
        workers.append(threading.Thread(target=pull))
        for t in workers:
            t.start()
        for t in workers[:-1]:
            t.join()
        t_up = time.perf_counter() - t0
        workers[-1].join()
        if errors:
            raise errors[0]
        wall = time.perf_counter() - t0
        c.patch(f"{BASE}/{bid}", json={"batch_status": "closed"}).raise_for_status()
        status = c.get(f"{BASE}/{bid}/status").json()
        assert pulled["records"] == records, pulled
        assert status["batch_status"] == "completed", status
        return {"rate": records / wall, "wall_s": wall, "upload_s": t_up,
                "peak_rss": srv.peak_rss, "rejected": rejected[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4, help="concurrent pushing clients")
    ap.add_argument("--chunks-per-request", type=int, default=10)
    ap.add_argument("--service", default="sales")
    ap.add_argument("--unique-record-key", default="sale_id",
                    help="echoed into the outputs ('' for none)")
    args = ap.parse_args()
    r = run(args.records, size=args.chunk_size, threads=args.threads,
            per_request=args.chunks_per_request, service=args.service,
            key=args.unique_record_key or None)
    print(f"spark {args.service} {args.records:,} records in {args.chunk_size:,}-record chunks, "
          f"{args.threads} pushing threads: {r['rate']:,.0f} records/s end to end "
          f"(pushed by {r['upload_s']:.1f} s, all pulled at {r['wall_s']:.1f} s, "
          f"{r['rejected']:.0f} pushes retried on a full input buffer), "
          f"server peak RSS {mb(int(r['peak_rss']))}")


if __name__ == "__main__":
    main()
