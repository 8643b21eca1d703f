"""Rejected NDJSON uploads: how soon the 4xx comes, and what they leave on disk.

    .venv/bin/python bench/rejected_upload.py [--mb 200] [--backend sqlite|postgres] [--good]

Prints, on a fresh database:
- the time from the start of a ``--mb`` upload whose first line is invalid to its 4xx,
  and how long the client then took to send the rest (which the server drops unread: it
  has answered);
- the database's size before and after an upload of the same size whose last line is
  invalid (SQLite: the file and its -wal; PostgreSQL: ``pg_database_size``), and the
  time to its 4xx;
- with ``--good``, the time to accept a valid upload of that size (on another fresh
  database), for comparing the engine's ingest throughput before and after a change.

The body goes over a raw socket from a thread while the main thread waits for the
response, as curl does: a server that answers early is seen answering early (an HTTP
client that sends the whole body before reading would hide it).
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from common import BenchServer, db_bytes, drop_pg_database, fresh_pg_database

LINE = (b'{"sku": "SKU-0000000", "price": 12.5, "quantity": 3, "tax": 0.1, '
        b'"note": "' + b"x" * 120 + b'"}\n')
BAD = b'{"sku": oops}\n'
CHUNK_LINES = 512


def body(size: int, *, bad: str | None) -> Iterator[bytes]:
    """About ``size`` bytes of NDJSON, with one invalid line first, last or nowhere."""
    block = LINE * CHUNK_LINES
    sent = 0
    if bad == "first":
        yield BAD
        sent += len(BAD)
    while sent + len(block) <= size:
        yield block
        sent += len(block)
    if bad == "last":
        yield BAD


def body_len(size: int, *, bad: str | None) -> int:
    return sum(len(c) for c in body(size, bad=bad))


class Upload:
    """One ``POST /api/batches`` sent over a raw socket; the response read as it comes."""

    def __init__(self, srv: BenchServer, size: int, *, bad: str | None) -> None:
        self.srv, self.size, self.bad = srv, size, bad
        self.sent = 0
        self.send_error: str | None = None
        self.t0 = 0.0
        self.send_s = 0.0  # from the start to the last byte the client could send

    def _send(self, sock: socket.socket) -> None:
        head = (f"POST /api/batches?task=sales&close=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.srv.key}\r\n"
                f"Content-Type: application/x-ndjson\r\n"
                f"Content-Length: {body_len(self.size, bad=self.bad)}\r\n\r\n").encode()
        try:
            sock.sendall(head)
            for chunk in body(self.size, bad=self.bad):
                sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError as exc:  # the server answered and closed: expected for a 4xx
            self.send_error = type(exc).__name__
        self.send_s = time.perf_counter() - self.t0

    def run(self) -> tuple[int, float, bytes]:
        """(status, seconds from the first byte sent to the status line, response head)."""
        sock = socket.create_connection(("127.0.0.1", self.srv.port))
        try:
            t0 = self.t0 = time.perf_counter()
            sender = threading.Thread(target=self._send, args=(sock,), daemon=True)
            sender.start()
            got = b""
            while b"\r\n" not in got:
                part = sock.recv(65536)
                if not part:
                    raise RuntimeError(f"connection closed without a response: {got!r}")
                got += part
            took = time.perf_counter() - t0
            sock.settimeout(5)
            try:
                while b"\r\n\r\n" not in got or len(got) < 4096:
                    part = sock.recv(65536)
                    if not part:
                        break
                    got += part
            except OSError:
                pass
            sender.join(120)  # the socket stays open: the server may read on (keep-alive)
        finally:
            sock.close()
        return int(got.split(b" ", 2)[1]), took, got


def db_parts(database_url: str) -> str:
    if not database_url.startswith("sqlite:///"):
        return ""
    path = Path(database_url[len("sqlite:///"):])
    parts = [p.stat().st_size if p.exists() else 0 for p in (path, Path(f"{path}-wal"))]
    return f" = file {mib(parts[0])} + wal {mib(parts[1])}"


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def seed(srv: BenchServer) -> None:
    """One small committed batch, so the database holds what a live one does."""
    with srv.client() as c:
        r = c.post("/api/batches", params={"task": "sales", "close": "true"},
                   content=LINE * 10, headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 201, r.text


def rejected(srv: BenchServer, size: int) -> None:
    seed(srv)
    up = Upload(srv, size, bad="first")
    status, took, _ = up.run()
    print(f"bad first line, {mib(body_len(size, bad='first'))} body: {status} after "
          f"{took * 1000:.0f} ms; the client sent {mib(up.sent)} of it in {up.send_s:.2f} s "
          f"({up.send_error or 'the server read it all'})", flush=True)
    before = db_bytes(srv.database_url)
    up = Upload(srv, size, bad="last")
    status, took, _ = up.run()
    after = db_bytes(srv.database_url)
    print(f"bad last line, {mib(body_len(size, bad='last'))} body: {status} after "
          f"{took:.1f} s; database {mib(before)} before, {mib(after)} after "
          f"({(after - before) / before * 100:+.1f}%){db_parts(srv.database_url)}", flush=True)


def accepted(srv: BenchServer, size: int) -> None:
    seed(srv)
    up = Upload(srv, size, bad=None)
    status, took, head = up.run()
    assert status == 201, head[:2000]
    n = body_len(size, bad=None) // len(LINE)
    print(f"good upload, {mib(body_len(size, bad=None))}, {n:,} items: {status} after "
          f"{took:.1f} s ({n / took:,.0f} items/s); database {mib(db_bytes(srv.database_url))}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200, help="body size in MB (10^6 bytes)")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--good", action="store_true", help="also time a valid upload")
    a = ap.parse_args()
    size = a.mb * 1_000_000
    print(f"backend {a.backend}", flush=True)
    for run in (rejected, accepted) if a.good else (rejected,):
        url = fresh_pg_database() if a.backend == "postgres" else None
        try:
            # The worker is off: only intake is measured, not processing competing for it.
            with BenchServer(database_url=url, run_worker="false") as srv:
                run(srv, size)
        finally:
            if url is not None:
                drop_pg_database(url)


if __name__ == "__main__":
    main()
