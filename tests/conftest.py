"""Fixtures: real batchd servers in subprocesses on a real database."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 30.0,
               interval_s: float = 0.05, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


TERMINAL = {"completed", "partial", "failed", "cancelled", "expired"}


@dataclass
class Server:
    """A batchd server process (``batchd serve``) or worker (``batchd worker``)."""

    database_url: str
    admin_key: str
    env: dict[str, str]
    log_path: Path
    command: str = "serve"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Server:
        env = {**os.environ, **self.env, "BATCHD_PORT": str(self.port),
               "BATCHD_DATABASE_URL": self.database_url, "BATCHD_ADMIN_KEY": self.admin_key,
               "PYTHONPATH": str(ROOT)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchd.cli.main", self.command], env=env,
            stdout=log, stderr=subprocess.STDOUT, cwd=str(self.log_path.parent),
        )
        if wait and self.command == "serve":
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_path.read_text()[-3000:]}")
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

    def new_key(self, tenant: str, *, role: str = "user", owner: str | None = None) -> str:
        with self.client() as c:
            body: dict[str, Any] = {"tenant": tenant, "role": role}
            if owner:
                body["owner"] = owner
            r = c.post("/api/keys", json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["key"])


PG_ADMIN_URL = os.environ.get("BATCHD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def backend() -> str:
    """``sqlite`` (default) or ``postgres``: BATCHD_TEST_BACKEND switches the whole suite."""
    return os.environ.get("BATCHD_TEST_BACKEND", "sqlite")


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
