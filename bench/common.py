"""Shared by the benchmarks: a real server subprocess and its peak RSS."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PG_ADMIN_URL = os.environ.get("BATCHD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def fresh_pg_database() -> str:
    """A new empty PostgreSQL database on the local server; its URL."""
    import psycopg

    name = f"batchd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def db_bytes(database_url: str) -> int:
    """What a database takes on disk: SQLite's file and its WAL, or PostgreSQL's
    database (its relations; the cluster's WAL is shared and recycled)."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///"):])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


class RssSampler:
    """A process's RSS, sampled every few milliseconds while the block runs: ``base``
    (at the start) and ``most`` (the peak seen). Benchmarks and tests share it."""

    def __init__(self, pid: int, *, every_s: float = 0.005) -> None:
        self.process = psutil.Process(pid)
        self.base = self.process.memory_info().rss
        self.most = self.base
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.most = max(self.most, self.process.memory_info().rss)
            except psutil.Error:
                return

    @property
    def growth(self) -> int:
        return self.most - self.base

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class BenchWorker:
    """A ``batchd worker`` process on a database."""

    def __init__(self, database_url: str, **settings: Any) -> None:
        env = {**os.environ, "BATCHD_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
        env.update({f"BATCHD_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc = subprocess.Popen([sys.executable, "-m", "batchd.cli.main", "worker"],
                                     env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class BenchServer:
    """``batchd serve`` on a fresh database, with RSS sampling."""

    def __init__(self, *, database_url: str | None = None, **settings: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="batchd-bench-"))
        self.database_url = database_url or f"sqlite:///{self.dir / 'bench.db'}"
        self.port = free_port()
        self.key = "bench-" + secrets.token_hex(16)
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._sampling = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BenchServer:
        env = {**os.environ, "BATCHD_PORT": str(self.port), "BATCHD_ADMIN_KEY": self.key,
               "BATCHD_DATABASE_URL": self.database_url, "PYTHONPATH": str(ROOT)}
        env.update({f"BATCHD_{k.upper()}": str(v) for k, v in self.settings.items()})
        self.proc = subprocess.Popen([sys.executable, "-m", "batchd.cli.main", "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        assert self.proc is not None
        p = psutil.Process(self.proc.pid)
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, p.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=600,
                            headers={"Authorization": f"Bearer {self.key}"})

    def __exit__(self, *exc: object) -> None:
        self._sampling = False
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_terminal(c: httpx.Client, batch_id: str, poll_s: float = 0.05) -> dict[str, Any]:
    while True:
        b = c.get(f"/api/batches/{batch_id}").json()
        if b["status"] not in ("open", "closed"):
            return b
        time.sleep(poll_s)


def timed_download(c: httpx.Client, path: str, params: dict[str, Any],
                   pid: int) -> tuple[float, int, int, int]:
    """GET ``path`` to its last byte: seconds, bytes, line ends, and the peak RSS of the
    server (``pid``) meanwhile."""
    t0 = time.perf_counter()
    size = lines = 0
    with RssSampler(pid, every_s=0.01) as rss, c.stream("GET", path, params=params) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return time.perf_counter() - t0, size, lines, rss.most


def mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB"
