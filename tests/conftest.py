"""Fixtures: real batchd servers in subprocesses on a real database."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

BACKENDS = ("sqlite", "postgres")


def _time_factor() -> float:
    raw = os.environ.get("BATCHD_TEST_TIME_FACTOR")
    if raw is None:
        # Several test processes share the cores under pytest-xdist: allow for it.
        return 2.0 if os.environ.get("PYTEST_XDIST_WORKER") else 1.0
    try:
        factor = float(raw)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise pytest.UsageError(f"BATCHD_TEST_TIME_FACTOR must be a number > 0, not {raw!r}")
    return factor


TIME_FACTOR = _time_factor()


def scaled(seconds: float) -> float:
    """A timing bound for this machine: ``seconds`` times BATCHD_TEST_TIME_FACTOR.

    Bounds that a busy machine could miss (deadlines, allowances) go through this;
    bounds that are settings of the server under test are derived from those.
    """
    return seconds * TIME_FACTOR


def local_socket() -> socket.socket:
    """A listening-ready socket bound to a port the system chose, for in-process servers.

    Hand it to the server (``uvicorn.Server.run(sockets=[...])``) so the port stays
    held from choice to use: no other process can take it in between.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 30.0,
               interval_s: float = 0.05, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, for ``scaled(timeout_s)``."""
    deadline = time.monotonic() + scaled(timeout_s)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {scaled(timeout_s):g}s waiting for {what}")
        time.sleep(interval_s)


TERMINAL = {"completed", "partial", "failed", "cancelled", "expired"}


SERVING = re.compile(rb"batchd serving on http://[^\s]+:(\d+) ")


@dataclass
class Server:
    """A batchd server process (``batchd serve``) or worker (``batchd worker``).

    A server binds a port of the system's choice (``BATCHD_PORT=0``) and says which in
    its log; ``port`` is that port once it is up (every restart may get another).
    """

    database_url: str
    admin_key: str
    env: dict[str, str]
    log_path: Path
    command: str = "serve"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0

    @property
    def url(self) -> str:
        if not self.port:
            self._await_port()
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Server:
        env = {**os.environ, **self.env, "BATCHD_PORT": "0",
               "BATCHD_DATABASE_URL": self.database_url, "BATCHD_ADMIN_KEY": self.admin_key,
               "PYTHONPATH": str(ROOT)}
        self.port = 0
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchd.cli.main", self.command], env=env,
            stdout=log, stderr=subprocess.STDOUT, cwd=str(self.log_path.parent),
        )
        log.close()
        if wait and self.command == "serve":
            self.wait_ready()
        return self

    def log_since_start(self) -> str:
        """What this process (the latest start) wrote to its log so far."""
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def _exited(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.command} exited: {self.log_since_start()[-3000:]}")

    def _await_port(self, timeout_s: float = 30.0) -> None:
        def bound() -> int:
            self._exited()
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                found = SERVING.search(f.read())
            return int(found.group(1)) if found else 0

        self.port = wait_until(bound, timeout_s=timeout_s, what=f"{self.command} to bind a port")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        self._await_port(timeout_s)

        def ready() -> bool:
            self._exited()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout_s=timeout_s, what="server start")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {key or self.admin_key}"}, **kw)

    def new_key(
        self, tenant: str, *, role: str = "user", owner: str | None = None,
        tier: str | None = None,
    ) -> str:
        """A key of ``role``. Without a ``tier`` it is held to no tier limit (tests of
        tiers and quotas say which tier they test)."""
        with self.client() as c:
            body: dict[str, Any] = {"tenant": tenant, "role": role}
            if owner:
                body["owner"] = owner
            if tier is None:
                body["limits"] = UNLIMITED
            else:
                body["tier"] = tier
            r = c.post("/api/keys", json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["key"])


UNLIMITED = {"max_batch_size": -1, "api_calls": -1, "items": -1, "cost_usd": -1}
PG_ADMIN_URL = os.environ.get("BATCHD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def backend() -> str:
    """``sqlite`` (default) or ``postgres``: BATCHD_TEST_BACKEND switches the whole suite."""
    value = os.environ.get("BATCHD_TEST_BACKEND", "sqlite")
    if value not in BACKENDS:
        raise pytest.UsageError(f"BATCHD_TEST_BACKEND must be one of {BACKENDS}, not {value!r}")
    return value


ALLOW_SKIPS = os.environ.get("BATCHD_TEST_ALLOW_SKIPS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    backend()  # an unknown backend is an error before anything runs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped test fails the run: a skip hides a guarantee nobody checked.

    ``BATCHD_TEST_ALLOW_SKIPS=1`` lets skips through, for a machine that lacks a part.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail") and not ALLOW_SKIPS:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"skipped, and skips fail this suite "
                           f"(BATCHD_TEST_ALLOW_SKIPS=1 lets them pass): {reason}")


def fresh_database_url(tmp_path: Path) -> str:
    """A new, empty database for one test."""
    if backend() != "postgres":
        return f"sqlite:///{tmp_path / 'batchd.db'}"
    return create_pg_database()


def create_pg_database() -> str:
    """A new, empty PostgreSQL database on the local server; its URL."""
    import psycopg

    name = f"batchd_t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    if not url.startswith("postgresql:"):
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``make_server(**env)`` starts a server on this test's SQLite file.

    Keyword arguments become BATCHD_* settings (``worker_concurrency=2`` →
    ``BATCHD_WORKER_CONCURRENCY=2``). ``command="worker"`` starts a worker;
    ``database_url=`` puts it on another database than this test's own.
    """
    started: list[Server] = []
    db_url = fresh_database_url(tmp_path)
    admin_key = "test-admin-" + secrets.token_hex(16)
    run_log = tmp_path / "runs.log"

    def make(command: str = "serve", start: bool = True, database_url: str | None = None,
             **settings: Any) -> Server:
        env = {"BATCHD_TASKS": "tests.support.tasks", "BATCHD_TEST_RUN_LOG": str(run_log),
               "BATCHD_RETRY_BACKOFF_S": "0.05"}
        env.update({f"BATCHD_{k.upper()}": str(v) for k, v in settings.items()})
        srv = Server(database_url=database_url or db_url, admin_key=admin_key, env=env,
                     command=command, log_path=tmp_path / f"{command}-{len(started)}.log")
        started.append(srv)
        return srv.start() if start else srv

    yield make
    for srv in started:
        srv.stop()
    drop_database(db_url)


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


@pytest.fixture
def run_log(tmp_path: Path) -> Path:
    return tmp_path / "runs.log"


def wait_batch(client: httpx.Client, batch_id: str, *, timeout_s: float = 60.0,
               statuses: set[str] = TERMINAL) -> dict[str, Any]:
    """Poll a batch until its status is one of ``statuses``."""

    def done() -> dict[str, Any] | None:
        b = client.get(f"/api/batches/{batch_id}").json()
        return b if b["status"] in statuses else None

    return wait_until(done, timeout_s=timeout_s, what=f"batch {batch_id} in {statuses}")
