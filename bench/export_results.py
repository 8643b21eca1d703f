"""Results export rate of a native batch: rows/s per format, SQLite against PostgreSQL.

A first server per backend runs one ``--items`` batch of the built-in ``echo`` task
(NDJSON, parallelism high so the inline runs go fast); a second server on the same
database, without a worker, then downloads ``GET /api/batches/{id}/results?format=…``
in each format while its RSS is sampled. The backends alternate (each round of a format
downloads it from every backend in turn) so that the machine's load hits both alike.
Printed: each download, then per format the best rows/s of each backend with the export
server's peak RSS during that download, and the PostgreSQL / SQLite ratio of the run.

    .venv/bin/python bench/export_results.py                      # 1,000,000 items, both
    .venv/bin/python bench/export_results.py --backend sqlite --items 100000
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import httpx
import orjson
import psutil
from common import (
    BenchServer,
    drop_pg_database,
    fresh_pg_database,
    mb,
    timed_download,
    wait_terminal,
)

FORMATS = ("jsonl", "json", "csv", "parquet")


def make_batch(srv: BenchServer, items: int) -> str:
    """A finished ``echo`` batch of ``items`` items; its id."""
    body = b"".join(orjson.dumps({"i": i, "name": f"item {i}"}) + b"\n" for i in range(items))
    with srv.client() as c:
        t0 = time.perf_counter()
        r = c.post("/api/batches", params={"task": "echo", "parallelism": 100_000},
                   content=body, headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 201, r.text
        b = wait_terminal(c, r.json()["id"], poll_s=0.5)
        assert b["counts"]["succeeded"] == items, b["counts"]
        print(f"  {items:,} items submitted and run in {time.perf_counter() - t0:.0f} s")
        return str(b["id"])


def download(c: httpx.Client, batch_id: str, fmt: str, pid: int) -> tuple[float, int, int, int]:
    """Seconds to the last byte, bytes, line ends, peak RSS of the server meanwhile."""
    return timed_download(c, f"/api/batches/{batch_id}/results", {"format": fmt}, pid)


def expected_lines(fmt: str, items: int) -> int | None:
    return {"jsonl": items, "json": items, "csv": items + 1}.get(fmt)


@contextlib.contextmanager
def databases(backends: list[str], items: int) -> Iterator[dict[str, tuple[str, str]]]:
    """Each backend's database holding one finished batch: ``{backend: (url, batch id)}``."""
    made: dict[str, tuple[str, str]] = {}
    pg_urls: list[str] = []
    try:
        for backend in backends:
            url = None
            if backend == "postgres":
                url = fresh_pg_database()
                pg_urls.append(url)
            print(f"{backend}:")
            with BenchServer(database_url=url) as maker:
                made[backend] = (maker.database_url, make_batch(maker, items))
        yield made
    finally:
        for url in pg_urls:
            drop_pg_database(url)


def measure(args: argparse.Namespace, made: dict[str, tuple[str, str]]) -> None:
    # Format by format (Parquet, which leaves the server larger, last), each backend in
    # turn in every round: a format's figures on both backends come from the same minutes.
    best: dict[tuple[str, str], tuple[float, int]] = {}
    with contextlib.ExitStack() as stack:
        servers = {
            b: stack.enter_context(BenchServer(database_url=url, run_worker="false"))
            for b, (url, _) in made.items()
        }
        clients = {b: stack.enter_context(s.client()) for b, s in servers.items()}
        for b, s in servers.items():
            assert s.proc is not None
            print(f"{b} export server idle RSS: {mb(psutil.Process(s.proc.pid).memory_info().rss)}")
        for fmt in args.formats:
            for round_ in range(1, args.repeat + 1):
                for b, s in servers.items():
                    assert s.proc is not None
                    seconds, size, lines, peak = download(clients[b], made[b][1], fmt, s.proc.pid)
                    want = expected_lines(fmt, args.items)
                    assert want is None or lines == want, (fmt, lines, want)
                    rate = args.items / seconds
                    print(f"  {fmt:7} round {round_} {b:8} {seconds:6.2f} s {rate:>12,.0f} rows/s "
                          f"{size / 1e6:6.0f} MB  server peak RSS {mb(peak)}")
                    if rate > best.get((b, fmt), (0.0, 0))[0]:
                        best[(b, fmt)] = (rate, peak)
    report(args, list(made), best)


def report(args: argparse.Namespace, backends: list[str],
           best: dict[tuple[str, str], tuple[float, int]]) -> None:
    print(f"\nbest of {args.repeat}, {args.items:,} rows (server peak RSS during that download):")
    for fmt in args.formats:
        cells = [f"{b} {best[(b, fmt)][0]:>10,.0f} rows/s ({mb(best[(b, fmt)][1])})"
                 for b in backends]
        ratio = ""
        if len(backends) == 2:
            ratio = f"  PG/SQLite {best[('postgres', fmt)][0] / best[('sqlite', fmt)][0]:.0%}"
        print(f"  {fmt:7} " + "   ".join(cells) + ratio)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    args = ap.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    with databases(backends, args.items) as made:
        measure(args, made)


if __name__ == "__main__":
    main()
