"""Starting servers and workers as a new user does (issue 14, points 8 and 5): a missing
PostgreSQL database is created, or said in one line with exit code 1 at once; "serving"
is printed only once the server answers; a process that lacks a setting the others have
in use says so at start-up, one line per setting.

The PostgreSQL tests run on PostgreSQL whatever BATCHD_TEST_BACKEND says."""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL, ROOT, SERVING, Server, drop_database, scaled, wait_until

pytestmark = pytest.mark.timeout(scaled(120))

BATCHD = str(Path(sys.executable).with_name("batchd"))
PG_SERVER = PG_ADMIN_URL.rsplit("/", 1)[0]  # postgresql://postgres@127.0.0.1:5432


def batchd_env(**settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHD_")}
    env.update({"PYTHONPATH": str(ROOT), "BATCHD_PORT": "0", "BATCHD_TASKS": "",
                "BATCHD_ADMIN_KEY": "test-admin-" + secrets.token_hex(8)})
    env.update({f"BATCHD_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def run_batchd(tmp_path: Path, command: str, **settings: Any) -> subprocess.CompletedProcess[str]:
    """``batchd COMMAND`` expected to end by itself (it cannot start)."""
    return subprocess.run([BATCHD, command], env=batchd_env(**settings), cwd=tmp_path,
                          capture_output=True, text=True, timeout=scaled(60))


@pytest.fixture
def missing_db() -> Iterator[str]:
    """The URL of a PostgreSQL database that does not exist (dropped after the test)."""
    name = f"batchd_t_missing_{secrets.token_hex(5)}"
    url = f"{PG_SERVER}/{name}"
    yield url
    drop_database(url)


@pytest.fixture
def role_without_createdb() -> Iterator[str]:
    """A PostgreSQL login role that may not create databases."""
    role = f"batchd_t_role_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB")
    yield role
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")


def pg_database_exists(url: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (url.rsplit("/", 1)[1],)).fetchone() is not None


def test_serve_creates_a_missing_postgresql_database_and_says_serving_once_ready(
    tmp_path: Path, missing_db: str,
) -> None:
    env = batchd_env(database_url=missing_db)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([BATCHD, "serve"], env=env, cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        found = wait_until(lambda: proc.poll() is not None or SERVING.search(
            log_path.read_bytes()), what="the serving line")
        assert proc.poll() is None, log_path.read_text()
        assert found is not True
        text = log_path.read_text()
        assert "created database" in text and missing_db.rsplit("/", 1)[1] in text
        assert "Traceback" not in text and "FATAL" not in text
        # Printed once ready: the very first request after the line is answered, and the
        # admin key made at start-up already works.
        url = f"http://127.0.0.1:{int(found.group(1))}"
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        key = env["BATCHD_ADMIN_KEY"]
        r = httpx.get(f"{url}/api/tasks", headers={"Authorization": f"Bearer {key}"},
                      timeout=5)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(scaled(15))
    assert pg_database_exists(missing_db)


def test_a_worker_creates_a_missing_postgresql_database_too(
    tmp_path: Path, missing_db: str,
) -> None:
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([BATCHD, "worker"], env=batchd_env(database_url=missing_db),
                                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None or " running (" in log_path.read_text(),
                   what="the worker to start")
        assert proc.poll() is None, log_path.read_text()
    finally:
        proc.terminate()
        proc.wait(scaled(15))
    assert pg_database_exists(missing_db)


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_database_the_role_may_not_create_is_one_line_and_exit_code_1(
    tmp_path: Path, missing_db: str, role_without_createdb: str, command: str,
) -> None:
    name = missing_db.rsplit("/", 1)[1]
    url = missing_db.replace("postgres@", f"{role_without_createdb}@")
    done = run_batchd(tmp_path, command, database_url=url)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "BATCHD_DATABASE_URL" in line and repr(name) in line
    assert role_without_createdb in line and "CREATE DATABASE" in line
    assert "serving" not in done.stdout + done.stderr
    assert not pg_database_exists(missing_db)


def test_an_unreachable_database_server_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_batchd(tmp_path, "serve",
                      database_url=f"postgresql://postgres@127.0.0.1:{port}/batchd")
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line and "BATCHD_DATABASE_URL" in line


def _started_worker(make_server: Callable[..., Server], **settings: Any) -> Server:
    worker = make_server("worker", **settings)
    wait_until(lambda: worker._exited() or " running (" in worker.log_since_start(),
               what="the worker to start")
    return worker


def _announced(database_url: str) -> bytes:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return b"".join(bytes(r[0]) for r in conn.execute("SELECT info FROM processes"))
    with psycopg.connect(database_url) as pg:
        return b"".join(bytes(r[0]) for r in pg.execute("SELECT info FROM processes"))


def test_a_worker_says_which_shared_settings_it_lacks(
    make_server: Callable[..., Server],
) -> None:
    ups = json.dumps([{"name": "vllm", "base_url": "http://127.0.0.1:9/v1",
                       "api_key": "sk-upstream-secret", "models": ["tiny-chat"]}])
    srv = make_server(outbound_allow="loopback", llm_api_key="sk-secret-test", upstreams=ups)
    assert "BATCHD_" not in srv.log_since_start()  # the first process lacks nothing
    lacking = _started_worker(make_server)
    lines = [ln for ln in lacking.log_since_start().splitlines() if ln.startswith("BATCHD_")]
    assert len(lines) == 3, lines
    allow = next(ln for ln in lines if ln.startswith("BATCHD_OUTBOUND_ALLOW: "))
    assert allow.startswith("BATCHD_OUTBOUND_ALLOW: server+worker ")
    assert "allows 'loopback'; this worker does not" in allow and "webhook deliveries" in allow
    key = next(ln for ln in lines if ln.startswith("BATCHD_LLM_API_KEY: "))
    assert "this worker does not" in key
    models = next(ln for ln in lines if ln.startswith("BATCHD_UPSTREAMS: "))
    assert "'tiny-chat'" in models and "model_not_found" in models
    # A worker set up like the server has nothing to say.
    alike = _started_worker(make_server, outbound_allow="loopback", llm_api_key="sk-other",
                            upstreams=ups)
    assert "BATCHD_" not in alike.log_since_start()
    # Secrets are announced only as set or not.
    info = _announced(srv.database_url)
    assert b"loopback" in info and b"sk-secret-test" not in info and b"sk-other" not in info
    assert b"tiny-chat" in info and b"sk-upstream-secret" not in info
