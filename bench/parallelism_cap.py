"""The cap still bites: a batch with ``parallelism=64`` of items that sleep 10 ms.

    .venv/bin/python bench/parallelism_cap.py [--items 20000] [--cap 64] [--sleep-ms 10]
        [--workers 0] [--postgres]

From every item's recorded start and finish (the items API), the most items running at
once (it must never pass the cap) and the rate, against the ideal cap / sleep
(6,400 items/s for 64 × 10 ms).
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from datetime import datetime

import orjson
from common import BenchServer, BenchWorker, drop_pg_database, fresh_pg_database, wait_terminal


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def intervals(c: object, batch_id: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = c.get(f"/api/batches/{batch_id}/items", params=params).json()  # type: ignore[attr-defined]
        out += [(ts(i["started_at"]), ts(i["finished_at"])) for i in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def most_at_once(spans: list[tuple[float, float]]) -> int:
    # A finish at the same instant as a start frees its slot first.
    events = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--cap", type=int, default=64)
    ap.add_argument("--sleep-ms", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=0, help="worker processes (0: the server's)")
    ap.add_argument("--postgres", action="store_true")
    a = ap.parse_args()
    body = b"".join(orjson.dumps({"seconds": a.sleep_ms / 1000}) + b"\n" for _ in range(a.items))
    with ExitStack() as stack:
        url = None
        if a.postgres:
            url = fresh_pg_database()
            stack.callback(drop_pg_database, url)
        srv = stack.enter_context(BenchServer(
            database_url=url, **({"run_worker": "false"} if a.workers else {})))
        for _ in range(a.workers):
            stack.callback(BenchWorker(srv.database_url).stop)
        if a.workers:
            time.sleep(2.0)
        c = stack.enter_context(srv.client())
        r = c.post("/api/batches", params={"task": "sleep", "parallelism": a.cap},
                   content=body, headers={"Content-Type": "application/x-ndjson"})
        r.raise_for_status()
        b = wait_terminal(c, r.json()["id"])
        assert b["counts"]["succeeded"] == a.items, b["counts"]
        spans = intervals(c, b["id"])
    first = min(s for s, _ in spans)
    last = max(f for _, f in spans)
    rate = a.items / (last - first)
    ideal = a.cap / (a.sleep_ms / 1000)
    where = f"{'PostgreSQL' if a.postgres else 'SQLite'}, " + (
        f"{a.workers} worker processes" if a.workers else "one `batchd serve`")
    print(f"parallelism={a.cap}, {a.items:,} items of {a.sleep_ms:g} ms ({where}): "
          f"most running at once {most_at_once(spans)} (cap {a.cap}); "
          f"{rate:,.0f} items/s = {rate / ideal:.0%} of the ideal {ideal:,.0f}")


if __name__ == "__main__":
    main()
