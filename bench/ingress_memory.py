"""What a 1 GB request body costs the server: each dialect's create route, with and
without a valid key, on the default settings.

    .venv/bin/python bench/ingress_memory.py [--gb 1]

For each route the body is streamed (chunked, no Content-Length, so the server has
to count) over a raw socket until the server answers; the server's RSS is sampled
every 5 ms. Prints the status, how long the answer took, how much of the body had
been sent by then, and the peak RSS growth over the server's RSS before the request.
Target: under 64 MB each.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Callable

import httpx
import orjson
from common import BenchServer, RssSampler

MiB = 1 << 20


def ndjson_chunk() -> bytes:
    line = orjson.dumps({"text": "x" * 80}) + b"\n"
    return line * (MiB // len(line))


def json_array_chunk() -> bytes:
    item = orjson.dumps({"text": "x" * 80}) + b","
    return item * (MiB // len(item))


def stream(port: int, method: str, path: str, headers: dict[str, str], head: bytes,
           chunk: Callable[[], bytes], total: int) -> tuple[int, float, int]:
    """Send a chunked body of ``total`` bytes until the server answers: (status, seconds
    until the answer, bytes sent by then)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked",
             *(f"{k}: {v}" for k, v in headers.items())]
    answer: dict[str, object] = {}

    def read() -> None:
        data = b""
        try:
            while b"\r\n" not in data:
                part = s.recv(4096)
                if not part:
                    break
                data += part
        except OSError:
            pass
        answer["at"] = time.monotonic()
        answer["status"] = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0

    t0 = time.monotonic()
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    piece = chunk()
    first = head + piece[len(head):]
    try:
        while sent < total and "at" not in answer:
            body = first if sent == 0 else piece
            s.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n")
            sent += len(body)
        if "at" not in answer:
            s.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    reader.join(600)
    s.close()
    return int(answer.get("status", 0)), float(answer.get("at", time.monotonic())) - t0, sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--only", default="", help="only the routes whose name contains this")
    args = ap.parse_args()
    total = int(args.gb * 1024 * MiB)
    with BenchServer() as srv:
        assert srv.proc is not None
        with srv.client() as c:
            r = c.post("/default/api/v4/batch", json={"service": "sales"})
            spark_batch = r.json()["id"] if r.status_code in (200, 201) else "x"
        routes = [
            ("native NDJSON", "/api/batches?task=echo", "application/x-ndjson", b"",
             ndjson_chunk),
            ("native JSON", "/api/batches", "application/json",
             b'{"task": "echo", "items": [', json_array_chunk),
            ("AI queue", "/api/v1/batch/enqueue", "application/json",
             b'{"messages": [', json_array_chunk),
            ("Spark chunks", f"/default/api/v4/batch/{spark_batch}/chunks",
             "application/json", b'{"chunks": [', json_array_chunk),
            ("Simulations", "/simulations/batch", "application/json",
             b'{"inputs": [', json_array_chunk),
            ("Task runs", "/v0/tasks/echo/batches", "application/json",
             b'{"task_run_requests": [', json_array_chunk),
        ]
        print(f"{total / MiB / 1024:.1f} GB streamed to each create route (default settings)")
        print(f"{'route':<15} {'key':<6} {'status':>6} {'answer s':>9} {'sent MB':>8} "
              f"{'RSS growth MB':>14}")
        worst = 0
        for name, path, ctype, head, chunk in routes:
            if args.only.lower() not in name.lower():
                continue
            for keyed in (False, True):
                headers = {"Content-Type": ctype}
                if keyed:
                    headers["Authorization"] = f"Bearer {srv.key}"
                httpx.get(f"{srv.url}/healthz")
                time.sleep(0.3)
                with RssSampler(srv.proc.pid) as peak:
                    status, took, sent = stream(srv.port, "POST", path, headers, head, chunk,
                                                total)
                growth = peak.growth
                worst = max(worst, growth)
                print(f"{name:<15} {'valid' if keyed else 'none':<6} {status:>6} {took:>9.2f} "
                      f"{sent / MiB:>8.0f} {growth / MiB:>14.1f}", flush=True)
        print(f"worst RSS growth: {worst / MiB:.1f} MB (target < 64 MB)")


if __name__ == "__main__":
    main()
