"""AI job queue (seed 003): enqueue 100,000 jobs over HTTP, flush them to the local
provider in batches of 10,000, and wait until every result is readable.

Prints: enqueue rate (one job per request, as the dialect takes them, from
``--concurrency`` connections); the time of the flushes; and the time from the first
flush until every job's result was recorded by ``internal/poll`` and so readable
through ``jobs/{id}/result`` (a sample of which is then read back).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import httpx
import orjson
from common import BenchServer, drop_pg_database, fresh_pg_database

API = "/api/v1/batch"
JOB_TYPES = ("sentiment_analysis", "risk_report", "trading_analytics")


def payload(i: int) -> dict[str, object]:
    kind = JOB_TYPES[i % len(JOB_TYPES)]
    if kind == "sentiment_analysis":
        return {"text": f"strong growth in quarter {i}, some risk"}
    if kind == "risk_report":
        return {"returns": [0.01 * ((i + k) % 7 - 3) for k in range(8)]}
    return {"trades": [{"pnl": (i + k) % 11 - 5} for k in range(5)]}


class KeepAlive:
    """A minimal HTTP/1.1 keep-alive connection for JSON POSTs.

    httpx's client costs more CPU per request than the server spends answering it, and
    client and server share this machine's two cores; this one measures the server.
    """

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.head = (f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                     "Content-Type: application/json\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\n" + self.head
                          + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def enqueue_all(url: str, key: str, n: int, concurrency: int) -> list[str]:
    ids: list[str] = [""] * n
    counter = iter(range(n))
    host, port = url.split("//")[1].split(":")

    async def worker() -> None:
        conn = KeepAlive(host, int(port), key)
        try:
            for i in counter:
                body = orjson.dumps({"job_type": JOB_TYPES[i % len(JOB_TYPES)],
                                     "payload": payload(i), "priority": i % 101})
                status, answer = await conn.post(f"{API}/enqueue", body)
                assert status == 200, answer
                ids[i] = orjson.loads(answer)["job"]["id"]
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids


def run(c: httpx.Client, url: str, key: str, *, jobs: int, batch: int,
        concurrency: int) -> None:
    t0 = time.perf_counter()
    ids = asyncio.run(enqueue_all(url, key, jobs, concurrency))
    enqueue_s = time.perf_counter() - t0
    print(f"  enqueue: {jobs:,} jobs in {enqueue_s:.1f} s = {jobs / enqueue_s:,.0f} jobs/s "
          f"({concurrency} connections, one job per request)")

    t1 = time.perf_counter()
    batches = []
    while True:
        r = c.post(f"{API}/internal/flush", json={"max_jobs": batch})
        r.raise_for_status()
        done = r.json()
        if not done["jobs_count"]:
            break
        batches.append(done["batch_id"])
    flush_s = time.perf_counter() - t1
    print(f"  flush: {len(batches)} local provider batches of {batch:,} in {flush_s:.1f} s "
          f"({flush_s / max(1, len(batches)):.2f} s each)")

    open_batches, recorded = list(batches), 0
    while open_batches:
        for batch_id in list(open_batches):
            body = c.post(f"{API}/internal/poll", json={"batch_id": batch_id}).json()
            recorded += body["jobs_processed"]
            if body["status"] == "ended":
                open_batches.remove(batch_id)
        if open_batches:
            time.sleep(0.1)
    ready_s = time.perf_counter() - t1
    stats = c.get(f"{API}/stats").json()
    assert stats["completed_jobs"] == jobs == recorded, (stats, recorded)
    print(f"  every result readable {ready_s:.1f} s after the first flush "
          f"({jobs / ready_s:,.0f} jobs/s through flush, run and poll)")
    sample = random.Random(7).sample(ids, 1000)
    t2 = time.perf_counter()
    for job_id in sample:
        r = c.get(f"{API}/jobs/{job_id}/result")
        assert r.status_code == 200 and r.json()["summary"], r.text
    print(f"  read back 1,000 random results in {time.perf_counter() - t2:.2f} s; "
          f"stats: {stats['total_tokens_used']:,} tokens, "
          f"cost ${stats['total_cost_usd']:.2f}, savings ${stats['total_savings_usd']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--postgres", action="store_true", help="on a fresh local PostgreSQL db")
    args = ap.parse_args()
    url = fresh_pg_database() if args.postgres else None
    try:
        with BenchServer(database_url=url) as srv, srv.client() as c:
            print(f"aibatch queue ({'PostgreSQL' if url else 'SQLite'}), local provider:")
            run(c, srv.url, srv.key, jobs=args.jobs, batch=args.batch,
                concurrency=args.concurrency)
            print(f"  server peak RSS {srv.peak_rss / 1024 / 1024:.0f} MB")
    finally:
        if url:
            drop_pg_database(url)


if __name__ == "__main__":
    main()
