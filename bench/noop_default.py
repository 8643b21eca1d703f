"""No-op items per second with a batch created with no settings at all (the default is
the product): the built-in ``echo`` task over NDJSON, no query parameters.

    .venv/bin/python bench/noop_default.py [--items 100000] [--only serve|sqlite|postgres]

Three set-ups: one ``batchd serve`` process on SQLite (its own worker); a server without a
worker plus two ``batchd worker`` processes on SQLite; the same on PostgreSQL. The rate is
the server-recorded start to finish of the batch; submit to done is printed too.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime

import orjson
from common import BenchServer, BenchWorker, drop_pg_database, fresh_pg_database, wait_terminal


def seconds(b: dict[str, str], field: str) -> float:
    return datetime.fromisoformat(b[field].replace("Z", "+00:00")).timestamp()


@contextmanager
def setup(kind: str) -> Iterator[BenchServer]:
    with ExitStack() as stack:
        if kind == "serve":
            yield stack.enter_context(BenchServer())
            return
        url = None
        if kind == "postgres":
            url = fresh_pg_database()
            stack.callback(drop_pg_database, url)
        srv = stack.enter_context(BenchServer(database_url=url, run_worker="false"))
        for _ in range(2):
            stack.callback(BenchWorker(srv.database_url).stop)
        time.sleep(2.0)  # let the workers connect and start listening
        yield srv


def run(kind: str, body: bytes, items: int) -> str:
    with setup(kind) as srv, srv.client() as c:
        t0 = time.perf_counter()
        r = c.post("/api/batches", params={"task": "echo"}, content=body,
                   headers={"Content-Type": "application/x-ndjson"})
        r.raise_for_status()
        assert r.json()["parallelism"] is None, r.json()  # no cap unless one is set
        b = wait_terminal(c, r.json()["id"])
        wall = time.perf_counter() - t0
    assert b["counts"]["succeeded"] == items, b["counts"]
    run_s = seconds(b, "finished_at") - seconds(b, "started_at")
    names = {"serve": "one `batchd serve`, SQLite", "sqlite": "server + 2 workers, SQLite",
             "postgres": "server + 2 workers, PostgreSQL"}
    return (f"{names[kind]:<31} {items / run_s:>8,.0f} items/s ({items:,} in {run_s:.2f} s; "
            f"submit to done {wall:.2f} s, {items / wall:,.0f} items/s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--only", choices=["serve", "sqlite", "postgres"], action="append")
    args = ap.parse_args()
    body = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(args.items))
    print(f"no-op batch created with no settings, {args.items:,} items")
    for kind in args.only or ["serve", "sqlite", "postgres"]:
        print(run(kind, body, args.items), flush=True)


if __name__ == "__main__":
    main()
