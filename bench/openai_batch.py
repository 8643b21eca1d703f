"""(k) The OpenAI Batch API on your own model server: a 50,000-request ``/v1/batches``
batch against the stand-in model server (20 ms a request, concurrency limit 256), driven
by the official ``openai`` SDK; and the upload and validation of a 200 MB input file.

Prints requests per second end to end (upload to the output file's last byte), the
upstream concurrency achieved (the stand-in's peak, never above the limit), the server's
peak RSS, and the 200 MB file's upload and validation times.

    .venv/bin/python bench/openai_batch.py [--requests 50000] [--big-mb 200]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil
from common import ROOT, BenchServer

sys.path.insert(0, str(ROOT))
import openai  # noqa: E402
from tests.support.model_server import StandIn  # noqa: E402


def chat_lines(n: int, *, pad: int = 0) -> bytes:
    filler = "x" * pad
    return b"".join(orjson.dumps({
        "custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "bench", "max_tokens": 16,
                 "messages": [{"role": "user", "content": f"q{i} {filler}"}]}}) + b"\n"
        for i in range(n))


def wait_done(client: openai.OpenAI, batch_id: str) -> openai.types.Batch:
    while True:
        b = client.batches.retrieve(batch_id)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b
        time.sleep(0.1)


def run_batch(client: openai.OpenAI, srv: BenchServer, stand: StandIn, n: int) -> None:
    data = chat_lines(n)
    stand_ps = psutil.Process(stand.proc.pid)
    cpu0 = srv.cpu_seconds(), _cpu(stand_ps)
    t0 = time.perf_counter()
    f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    t_up = time.perf_counter()
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    t_created = time.perf_counter()
    done = wait_done(client, b.id)
    assert done.status == "completed" and done.output_file_id, done
    out = client.files.content(done.output_file_id).content
    wall = time.perf_counter() - t0
    cpu = srv.cpu_seconds() - cpu0[0], _cpu(stand_ps) - cpu0[1]
    lines = out.count(b"\n")
    assert lines == n and done.request_counts and done.request_counts.completed == n
    stats = stand.stats()
    print(f"requests: {n:,} of {len(data) / 1e6:.1f} MB; upload {t_up - t0:.2f} s, "
          f"create+validate {t_created - t_up:.2f} s")
    print(f"end to end (upload to last output byte): {wall:.2f} s -> {n / wall:,.0f} req/s")
    run_s = (done.finalizing_at or done.completed_at or 0) - (done.in_progress_at or 0)
    if run_s > 0:
        print(f"in progress to finalizing: {run_s} s (whole seconds) -> ~{n / run_s:,.0f} req/s")
    print(f"CPU a request: server {cpu[0] / n * 1e6:.0f} µs, stand-in {cpu[1] / n * 1e6:.0f} µs "
          f"(machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"upstream: peak concurrency {stats['peak_concurrency']} (limit 256), "
          f"peak {stats['peak_rate']} requests in a second, {stats['requests']:,} requests")


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def big_file(client: openai.OpenAI, mb: int) -> None:
    per_line = 4000
    n = mb * 1_000_000 // (per_line + 150)
    data = chat_lines(n, pad=per_line)
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as tmp:
        Path(tmp.name).write_bytes(data)
        size = len(data)
        del data
        t0 = time.perf_counter()
        with open(tmp.name, "rb") as fh:
            f = client.files.create(file=("big.jsonl", fh), purpose="batch")
        t_up = time.perf_counter() - t0
    t1 = time.perf_counter()
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    t_val = time.perf_counter() - t1
    client.batches.cancel(b.id)
    print(f"{size / 1e6:.0f} MB input file ({n:,} requests): upload {t_up:.2f} s "
          f"({size / 1e6 / t_up:.0f} MB/s), validation into the engine {t_val:.2f} s "
          f"(status {b.status})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--big-mb", type=int, default=200)
    args = ap.parse_args()
    log = Path(tempfile.mkdtemp()) / "stand-in.log"
    stand = StandIn(log_path=str(log), latency_s=0.02)
    ups = [{"name": "stand-in", "base_url": stand.base_url, "models": ["bench"],
            "limits": {"concurrency": 256}}]
    try:
        with BenchServer(upstreams=json.dumps(ups), v1_batch_max_requests=1_000_000,
                         max_body_bytes=300 * 1024 * 1024) as srv:
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.key, max_retries=0,
                                   timeout=600)
            run_batch(client, srv, stand, args.requests)
            print(f"server peak RSS: {srv.peak_rss / 1e6:.0f} MB (the batch)")
            if args.big_mb:
                big_file(client, args.big_mb)
                print(f"server peak RSS: {srv.peak_rss / 1e6:.0f} MB (with the big file)")
    finally:
        stand.stop()


if __name__ == "__main__":
    main()
