"""(b)+(d) `sales` records/s through the native API, submit to results downloaded, and peak RSS.

Records go up as NDJSON in 1,000-record items; results come back as JSONL.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Iterator

import orjson
from common import BenchServer, mb, wait_terminal


def ndjson(n: int) -> Iterator[bytes]:
    rnd = random.Random(7)
    rows = [orjson.dumps({"price": rnd.randint(100, 99999) / 100, "quantity": rnd.randint(1, 50),
                          "tax": rnd.choice([0, 0.05, 0.1])}) for _ in range(1000)]
    block = b"\n".join(rows) + b"\n"
    for _ in range(n // 1000):
        yield block


def run(records: int, parts: int, database_url: str | None = None) -> dict[str, float]:
    with BenchServer(database_url=database_url) as srv, srv.client() as c:
        t0 = time.perf_counter()
        r = c.post("/api/batches", params={"task": "sales", "records_per_item": 1000,
                                           "close": "false", "parallelism": 64},
                   content=b"", headers={"Content-Type": "application/x-ndjson"})
        r.raise_for_status()
        batch_id = r.json()["id"]
        blocks = records // 1000
        shares = [blocks // parts + (1 if i < blocks % parts else 0) for i in range(parts)]
        errors: list[BaseException] = []

        def push(i: int) -> None:
            try:
                with srv.client() as cc:
                    rr = cc.post(f"/api/batches/{batch_id}/items", content=ndjson(shares[i] * 1000),
                                 headers={"Content-Type": "application/x-ndjson"})
                    rr.raise_for_status()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=push, args=(i,)) for i in range(parts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        t_up = time.perf_counter() - t0
        c.post(f"/api/batches/{batch_id}/close").raise_for_status()
        b = wait_terminal(c, batch_id)
        t_done = time.perf_counter() - t0
        assert b["status"] == "completed" and b["records"]["succeeded"] == records, b
        n = 0
        with c.stream("GET", f"/api/batches/{batch_id}/results") as resp:
            for chunk in resp.iter_bytes():
                n += chunk.count(b"\n")
        wall = time.perf_counter() - t0
        assert n == records, n
        return {"records": records, "upload_s": t_up, "done_s": t_done, "wall_s": wall,
                "rate": records / wall, "peak_rss": srv.peak_rss}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    ap.add_argument("--parts", type=int, default=4, help="concurrent upload requests")
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    for records in args.records:
        r = run(records, args.parts, args.database_url)
        print(f"sales {records:>9,} records: {r['rate']:>9,.0f} records/s end to end "
              f"(upload {r['upload_s']:.1f} s, processed at {r['done_s']:.1f} s, "
              f"downloaded at {r['wall_s']:.1f} s), server peak RSS {mb(int(r['peak_rss']))}")


if __name__ == "__main__":
    main()
