"""What the README promises a user, tried as a user would: real servers, the real CLI.

Covers native Parquet results (API, CLI, clients), results formats from the file
name, ``BATCHD_CONFIG_FILE``, the first-start admin key, ``batchd status --json``,
``batchd keys create --limits``, ``expires_after_s``, ``max_error_pct`` and
``GET /api/usage``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchd.client import AsyncClient, BatchdHTTPError, Client
from tests.conftest import (
    ROOT,
    Server,
    drop_database,
    fresh_database_url,
    scaled,
    wait_batch,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

ADMIN_KEY_LINE = re.compile(r"batchd: created the admin key \(shown once, keep it\): (\S+)")


# helpers


def cli(url: str, key: str | None, *args: str, cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """The ``batchd`` command as a user runs it (BATCHD_URL, BATCHD_API_KEY)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHD_")}
    env.update({"BATCHD_URL": url, "COLUMNS": "120", "PYTHONPATH": str(ROOT)})
    if key is not None:
        env["BATCHD_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "batchd.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=scaled(120))


def create(c: httpx.Client, **body: Any) -> dict[str, Any]:
    r = c.post("/api/batches", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def jsonl_rows(c: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    r = c.get(f"/api/batches/{batch_id}/results")
    assert r.status_code == 200, r.text
    return [orjson.loads(line) for line in r.text.splitlines()]


def parquet_rows(data: bytes | Path) -> tuple[pa.Table, list[dict[str, Any]]]:
    table = pq.read_table(pa.BufferReader(data) if isinstance(data, bytes) else data)
    return table, table.to_pylist()


@dataclass
class UserServer(Server):
    """``batchd serve`` started the way the README starts it: BATCHD_ADMIN_KEY only when
    given, and ``python_path`` (e.g. a directory that hides a package) in front."""

    python_path: tuple[str, ...] = ()

    def start(self, *, wait: bool = True) -> UserServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHD_")}
        env.update(self.env)
        env.update({"BATCHD_PORT": "0", "BATCHD_DATABASE_URL": self.database_url,
                    "PYTHONPATH": os.pathsep.join([*self.python_path, str(ROOT)])})
        if self.admin_key:
            env["BATCHD_ADMIN_KEY"] = self.admin_key
        self.port = 0
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "batchd.cli.main", self.command], env=env,
                stdout=log, stderr=subprocess.STDOUT, cwd=str(self.log_path.parent),
            )
        if wait:
            self.wait_ready()
        return self


@pytest.fixture
def user_server(tmp_path: Path) -> Iterator[Callable[..., UserServer]]:
    """Factory: ``user_server(admin_key=None, python_path=(), **settings)``, all on one
    database of this test's own."""
    started: list[UserServer] = []
    db_url = fresh_database_url(tmp_path)

    def make(*, admin_key: str = "", python_path: tuple[str, ...] = (),
             **settings: Any) -> UserServer:
        env = {f"BATCHD_{k.upper()}": str(v) for k, v in settings.items()}
        srv = UserServer(database_url=db_url, admin_key=admin_key, env=env,
                         log_path=tmp_path / f"user-serve-{len(started)}.log",
                         python_path=python_path)
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop()
    drop_database(db_url)


# native Parquet results

MIXED = [
    {"n": 1, "x": 1.5, "ok": True, "name": "ann", "tags": ["a", "b"], "user": {"city": "Oslo"}},
    {"n": 2, "x": 2, "ok": False, "name": "bob", "tags": [], "user": {"city": "Rome"}},
]
MIXED_COLUMNS = ["n", "x", "ok", "name", "tags", "user.city"]


def test_results_parquet_has_the_csv_columns_typed_from_the_values(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="echo", items=MIXED)
        wait_batch(c, b["id"])
        expected = jsonl_rows(c, b["id"])
        r = c.get(f"/api/batches/{b['id']}/results", params={"format": "parquet"})
        as_csv = c.get(f"/api/batches/{b['id']}/results", params={"format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert f'filename="{b["id"]}.parquet"' in r.headers["content-disposition"]
    table, rows = parquet_rows(r.content)

    header = next(csv.reader(io.StringIO(as_csv.text)))
    assert table.column_names == header == [
        "item_id", "seq", "status", *(f"input.{k}" for k in MIXED_COLUMNS),
        *(f"output.{k}" for k in MIXED_COLUMNS), "usage.tokens_in", "usage.tokens_out",
        "usage.cost_usd", "error"]
    types = {f.name: f.type for f in table.schema}
    assert types["seq"] == pa.int64() and types["item_id"] == pa.string()
    for side in ("input", "output"):
        assert types[f"{side}.n"] == pa.int64()
        assert types[f"{side}.x"] == pa.float64()  # 1.5 and 2: numbers
        assert types[f"{side}.ok"] == pa.bool_()
        assert types[f"{side}.name"] == types[f"{side}.tags"] == pa.string()
    assert rows == [
        {"item_id": e["item_id"], "seq": n, "status": "succeeded",
         **{f"{side}.{k}": v for side in ("input", "output") for k, v in (
             ("n", rec["n"]), ("x", float(rec["x"])), ("ok", rec["ok"]), ("name", rec["name"]),
             ("tags", orjson.dumps(rec["tags"]).decode()), ("user.city", rec["user"]["city"]))},
         "usage.tokens_in": 0, "usage.tokens_out": 0, "usage.cost_usd": 0.0, "error": None}
        for n, (e, rec) in enumerate(zip(expected, MIXED, strict=True))
    ]


def test_results_parquet_keeps_failed_records_with_their_error(server: Server) -> None:
    with server.client() as c:
        b = create(c, task="fail", max_attempts=1,
                   items=[{"value": 1}, {"value": 2, "fail": True}, {"value": 3}])
        wait_batch(c, b["id"])
        r = c.get(f"/api/batches/{b['id']}/results", params={"format": "parquet"})
    assert r.status_code == 200, r.text
    _, rows = parquet_rows(r.content)
    assert [(x["seq"], x["status"], x["input.value"], x["output.value"]) for x in rows] == [
        (0, "succeeded", 1, 1), (1, "failed", 2, None), (2, "succeeded", 3, 3)]
    assert rows[0]["error"] is None and rows[2]["error"] is None
    error = orjson.loads(rows[1]["error"])
    assert error["code"] == "handler_error" and "failed on demand" in error["message"]


def test_results_parquet_of_a_large_batch_streams_row_groups(server: Server,
                                                              tmp_path: Path) -> None:
    n = 120_000
    records = ({"price": i % 97, "quantity": 1 + i % 5, "tax": 0.1} for i in range(n))
    out = tmp_path / "big.parquet"
    with Client(server.url, api_key=server.admin_key) as c:
        b = c.submit("sales", records, records_per_item=1000)
        assert c.wait(b["id"], poll_s=0.2, timeout_s=scaled(120))["status"] == "completed"
        written = c.download_results(b["id"], out)
    assert written == out.stat().st_size
    parquet = pq.ParquetFile(out)
    assert parquet.metadata.num_rows == n
    assert parquet.metadata.num_row_groups >= 3  # written (and sent) a row group at a time
    table = parquet.read(columns=["item_id", "seq", "input.price", "input.quantity",
                                  "output.total"])
    assert table.column("seq").to_pylist() == list(range(n))  # one row per record
    assert len(set(table.column("item_id").to_pylist())) == n // 1000
    prices = table.column("input.price").to_pylist()
    assert prices == [i % 97 for i in range(n)]
    assert table.column("output.total").to_pylist() == [
        round(p * q * 1.1, 2) for p, q in zip(prices, table.column("input.quantity").to_pylist(),
                                              strict=True)]


async def test_results_parquet_reads_the_rows_once() -> None:
    """A running batch changes between the writer's passes; the file must still be
    whole and match the rows read (before, a value of another type broke the stream)."""
    from batchd.export import exporter_for

    calls = 0

    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        nonlocal calls
        calls += 1
        value: Any = 1 if calls == 1 else "now text"
        yield [{"item_id": "itm_1", "seq": 0, "status": "succeeded", "input": {"v": value},
                "output": {"v": value}, "error": None}]

    data = b"".join([chunk async for chunk in exporter_for("parquet").stream(pages)])
    assert calls == 1
    _, rows = parquet_rows(data)
    assert rows == [{"item_id": "itm_1", "seq": 0, "status": "succeeded", "input.v": 1,
                     "output.v": 1, "error": None}]


def test_results_parquet_without_pyarrow_is_a_clear_422(
    user_server: Callable[..., UserServer], tmp_path: Path,
) -> None:
    hidden = tmp_path / "no_pyarrow"
    (hidden / "pyarrow").mkdir(parents=True)
    (hidden / "pyarrow" / "__init__.py").write_text(
        'raise ImportError("No module named \'pyarrow\' (hidden by the test)")\n')
    srv = user_server(admin_key="adm-" + os.urandom(8).hex(), python_path=(str(hidden),))
    with srv.client(srv.admin_key) as c:
        b = create(c, task="echo", items=MIXED)
        wait_batch(c, b["id"])
        r = c.get(f"/api/batches/{b['id']}/results", params={"format": "parquet"})
        assert r.status_code == 422, r.text
        (detail,) = r.json()["detail"]
        assert detail["loc"] == ["query", "format"]
        assert "pip install 'batchd[parquet]'" in detail["msg"]
        assert len(jsonl_rows(c, b["id"])) == 2  # the other formats still work

    out = tmp_path / "out.parquet"
    got = cli(srv.url, srv.admin_key, "results", b["id"], "-o", str(out))
    assert got.returncode == 1, got.stderr
    assert "error 422" in got.stderr and "pip install 'batchd[parquet]'" in got.stderr
    assert not out.exists() and not list(tmp_path.glob("*.part"))


# results formats in the CLI and the clients

def read_results(path: Path, fmt: str) -> list[dict[str, Any]]:
    """Each row's ``seq``, ``input.n`` and ``output.n``, read back from any format."""
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in path.read_text().splitlines()]
        return [{"seq": r["seq"], "in": r["input"]["n"], "out": r["output"]["n"]} for r in rows]
    if fmt == "json":
        return [{"seq": r["seq"], "in": r["input"]["n"], "out": r["output"]["n"]}
                for r in orjson.loads(path.read_bytes())]
    if fmt == "csv":
        with path.open() as f:
            return [{"seq": int(r["seq"]), "in": int(r["input.n"]), "out": int(r["output.n"])}
                    for r in csv.DictReader(f)]
    assert fmt == "parquet"
    return [{"seq": r["seq"], "in": r["input.n"], "out": r["output.n"]}
            for r in pq.read_table(path).to_pylist()]


EXPECTED = [{"seq": i, "in": i, "out": i} for i in range(5)]
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
            ".parquet": "parquet", ".pq": "parquet"}


def test_cli_results_takes_the_format_from_the_suffix_or_format(
    server: Server, tmp_path: Path,
) -> None:
    with server.client() as c:
        b = create(c, task="echo", items=[{"n": i} for i in range(5)])
        wait_batch(c, b["id"])

    def results(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(server.url, server.admin_key, "results", b["id"], *args)

    for suffix, fmt in SUFFIXES.items():
        out = tmp_path / f"out{suffix}"
        done = results("-o", str(out))
        assert done.returncode == 0, done.stderr
        assert f"of {fmt} to" in done.stderr
        assert read_results(out, fmt) == EXPECTED, suffix

    # --format names it where the suffix does not, in any letter case
    out = tmp_path / "results.txt"
    assert results("-o", str(out), "--format", "CSV").returncode == 0
    assert read_results(out, "csv") == EXPECTED
    out = tmp_path / "noext"
    assert results("-o", str(out), "--format", "parquet").returncode == 0
    assert read_results(out, "parquet") == EXPECTED
    # and may repeat what the suffix says
    out = tmp_path / "again.json"
    assert results("-o", str(out), "--format", "json").returncode == 0
    assert read_results(out, "json") == EXPECTED

    refused = {
        "disagree.csv": (["--format", "json"], "does not match"),
        "unknown.txt": ([], "cannot tell the results format"),
        "bad.xml": (["--format", "xml"], "unknown results format 'xml'"),
    }
    for name, (extra, message) in refused.items():
        done = results("-o", str(tmp_path / name), *extra)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert message in " ".join(done.stderr.split()), (name, done.stderr)
        assert not (tmp_path / name).exists()

    missing = cli(server.url, server.admin_key, "results", "bat_missing", "-o",
                  str(tmp_path / "m.csv"))
    assert missing.returncode == 1 and "error 404" in missing.stderr
    assert not (tmp_path / "m.csv").exists()


def test_client_download_results_takes_the_format_from_the_suffix(
    server: Server, tmp_path: Path,
) -> None:
    with Client(server.url, api_key=server.admin_key) as c:
        b = c.wait(c.submit("echo", [{"n": i} for i in range(5)])["id"], poll_s=0.05)
        for suffix, fmt in SUFFIXES.items():
            out = tmp_path / f"sync{suffix}"
            assert c.download_results(b["id"], out) == out.stat().st_size > 0
            assert read_results(out, fmt) == EXPECTED, suffix
        out = tmp_path / "sync.dat"
        c.download_results(b["id"], str(out), format="csv")
        assert read_results(out, "csv") == EXPECTED
        with pytest.raises(ValueError, match="does not match"):
            c.download_results(b["id"], tmp_path / "clash.csv", format="parquet")
        with pytest.raises(ValueError, match="cannot tell the results format"):
            c.download_results(b["id"], tmp_path / "what.txt")
        with pytest.raises(BatchdHTTPError) as missing:
            c.download_results("bat_missing", tmp_path / "missing.csv")
        assert missing.value.status_code == 404
    assert not any((tmp_path / n).exists() for n in ("clash.csv", "what.txt", "missing.csv"))
    assert not list(tmp_path.glob(".*.part"))


async def test_async_client_downloads_like_the_sync_one(server: Server, tmp_path: Path) -> None:
    assert {m for m in dir(Client) if not m.startswith("_")} - {"close"} == {
        m for m in dir(AsyncClient) if not m.startswith("_")} - {"aclose"}
    async with AsyncClient(server.url, api_key=server.admin_key) as c:
        b = await c.submit("echo", [{"n": i} for i in range(5)])
        await c.wait(b["id"], poll_s=0.05)
        for suffix, fmt in SUFFIXES.items():
            out = tmp_path / f"async{suffix}"
            await c.download_results(b["id"], out)
            assert read_results(out, fmt) == EXPECTED, suffix
        with pytest.raises(ValueError, match="does not match"):
            await c.download_results(b["id"], tmp_path / "clash.json", format="csv")


# configuration

def test_config_file_is_read_and_the_environment_wins(
    make_server: Callable[..., Server], tmp_path: Path,
) -> None:
    config = tmp_path / "batchd.toml"
    config.write_text(
        "# only in the file\n"
        "default_parallelism = 7\n"
        "max_body_bytes = 4000\n"
        "# in the file and in the environment\n"
        "default_max_attempts = 9\n"
        "\n[tier_limits.free]\n"
        "max_batch_size = 2\n"
    )
    srv = make_server(config_file=config, default_max_attempts=4)
    with srv.client() as c:
        b = create(c, task="echo", items=[{"n": 1}])
        assert b["parallelism"] == 7
        assert b["max_attempts"] == 4  # BATCHD_DEFAULT_MAX_ATTEMPTS over the file's 9
        big = c.post("/api/batches", json={"task": "echo", "items": [{"pad": "x" * 5000}]})
        assert big.status_code == 413, big.text
        free = c.post("/api/keys", json={"tenant": "cfg", "tier": "free"}).json()["key"]
    with httpx.Client(base_url=srv.url, headers={"X-API-Key": free}) as c:
        u = c.get("/simulations/batch/usage").json()
        assert u["max_batch_size"] == 2  # [tier_limits.free] from the file


def test_config_file_mistakes_stop_the_start_with_one_clear_line(tmp_path: Path) -> None:
    def serve(config: Path | None, command: str = "serve",
              **env: str) -> subprocess.CompletedProcess[str]:
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHD_")}
        run_env.update({"BATCHD_PORT": "0", "PYTHONPATH": str(ROOT), **env,
                        "BATCHD_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}"})
        if config is not None:
            run_env["BATCHD_CONFIG_FILE"] = str(config)
        done = subprocess.run([sys.executable, "-m", "batchd.cli.main", command],
                              env=run_env, capture_output=True, text=True, timeout=scaled(60))
        assert done.returncode == 2, (command, done.stderr)
        assert "Traceback" not in done.stderr and "serving" not in done.stderr
        return done

    for command in ("serve", "worker"):
        missing = serve(tmp_path / "missing.toml", command)
        assert f"cannot read BATCHD_CONFIG_FILE {tmp_path / 'missing.toml'}" in missing.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text("default_paralelism = 4\nBATCHD_LEASE_S = 10\n")
    assert "unknown settings BATCHD_LEASE_S, default_paralelism" in serve(typo).stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("default_parallelism = \n")
    assert "cannot read BATCHD_CONFIG_FILE" in serve(broken).stderr
    bad_value = tmp_path / "bad.toml"
    bad_value.write_text('default_parallelism = "many"\n')
    said = " ".join(serve(bad_value).stderr.split())
    assert f"invalid settings (environment or {bad_value}): default_parallelism:" in said
    said = " ".join(serve(None, BATCHD_LEASE_S="-1").stderr.split())
    assert "invalid settings (environment): lease_s: Input should be greater than 0" in said
    assert not (tmp_path / "never.db").exists()


# the first-start admin key

def test_first_start_prints_an_admin_key_once_and_it_works(
    user_server: Callable[..., UserServer],
) -> None:
    first = user_server()
    printed = ADMIN_KEY_LINE.findall(first.log_since_start())
    assert len(printed) == 1, first.log_since_start()
    key = printed[0]

    made = cli(first.url, key, "keys", "create", "--tenant", "acme")  # an admin-only command
    assert made.returncode == 0, made.stderr
    user_key = made.stdout.strip().splitlines()[-1]
    assert cli(first.url, user_key, "tasks").returncode == 0
    denied = cli(first.url, user_key, "keys", "create", "--tenant", "other")
    assert denied.returncode == 1 and "error 403" in denied.stderr
    first.stop()

    second = user_server()
    assert "admin key" not in second.log_since_start()
    listed = cli(second.url, key, "keys", "create", "--tenant", "acme")
    assert listed.returncode == 0, listed.stderr  # the first key still works
    with httpx.Client(base_url=second.url, headers={"Authorization": f"Bearer {key}"}) as c:
        keys = c.get("/api/keys").json()["data"]
    assert [k["role"] for k in keys].count("operator") == 1
    assert cli(second.url, "bd_not_the_key", "tasks").returncode == 1


def test_admin_key_from_the_environment_prints_nothing(
    user_server: Callable[..., UserServer],
) -> None:
    srv = user_server(admin_key="env-admin-" + os.urandom(8).hex())
    assert "admin key" not in srv.log_since_start()
    assert cli(srv.url, srv.admin_key, "keys", "create", "--tenant", "t").returncode == 0


# CLI: status --json and keys create --limits

def test_cli_status_json_is_the_batch_as_the_api_returns_it(server: Server,
                                                           tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(orjson.dumps({"value": i, "fail": i == 3}).decode() + "\n"
                            for i in range(6)))
    done = cli(server.url, server.admin_key, "submit", "fail", str(jobs), "--wait")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.strip().splitlines()[-1]
    with server.client() as c:
        long = create(c, task="echo", items=[{"n": 1}],
                      metadata={"note": "a long note " * 30, "nested": {"k": [1, 2, 3]}})
        wait_batch(c, long["id"])
        api = {i: c.get(f"/api/batches/{i}").json() for i in (batch_id, long["id"])}
    for bid, want in api.items():
        got = cli(server.url, server.admin_key, "status", bid, "--json")
        assert got.returncode == 0, got.stderr
        assert orjson.loads(got.stdout) == want  # parseable as it is (e.g. piped to jq)
    shown = orjson.loads(cli(server.url, server.admin_key, "status", batch_id, "--json").stdout)
    assert shown["status"] == "partial"
    assert shown["counts"] == {"total": 6, "queued": 0, "running": 0, "succeeded": 5,
                               "failed": 1, "cancelled": 0}
    assert shown["records"] == {"total": 6, "succeeded": 5, "failed": 1,
                                "cancelled": 0}
    assert shown["finished_at"] is not None and "actual_usd" in shown["cost"]


def test_cli_keys_create_limits_override_the_tiers(server: Server) -> None:
    made = cli(server.url, server.admin_key, "keys", "create", "--tenant", "lim",
               "--tier", "free", "--limits", '{"max_batch_size": 2, "api_calls": 4}')
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    with server.client() as admin:
        (stored,) = [k for k in admin.get("/api/keys").json()["data"] if k["tenant"] == "lim"]
    assert stored["tier"] == "free"
    assert stored["limits"] == {"max_batch_size": 2, "api_calls": 4}

    board = {"template_id": "board_meeting", "entity_count": 1, "timepoint_count": 1}
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as c:
        u = c.get("/simulations/batch/usage").json()  # call 1
        # the overridden limits, and the free tier's for the rest
        assert (u["max_batch_size"], u["api_calls_limit"], u["simulations_limit"],
                u["cost_limit_usd"]) == (2, 4, 100, 5.0)
        too_big = c.post("/simulations/batch", json={"simulations": [board] * 3})  # call 2
        assert too_big.status_code == 400 and too_big.json()["error"] == "BatchTooLarge"
        ok = c.post("/simulations/batch", json={"simulations": [board] * 2})  # call 3
        assert ok.status_code == 202, ok.text
        assert c.get("/simulations/batch").status_code == 200  # call 4
        over = c.get("/simulations/batch")
        assert over.status_code == 429 and over.json()["error"] == "ApiCallQuotaExceeded"

    not_json = cli(server.url, server.admin_key, "keys", "create", "--tenant", "x",
                   "--limits", "{api_calls: 5}")
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr
    unknown = cli(server.url, server.admin_key, "keys", "create", "--tenant", "x",
                  "--limits", '{"gold": 1}')
    assert unknown.returncode == 1 and "error 422" in unknown.stderr
    assert "gold" in unknown.stderr


# expires_after_s and max_error_pct, end to end

def test_expires_after_s_ends_the_batch_expired(make_server: Callable[..., Server]) -> None:
    srv = make_server(reap_interval_s=0.2)
    with srv.client() as c:
        slow = create(c, task="sleep", parallelism=1, expires_after_s=1.5,
                      items=[{"seconds": 0.5}] * 40)
        quick = create(c, task="echo", expires_after_s=600, items=[{"n": 1}])
        created = datetime.fromisoformat(slow["created_at"])
        expires = datetime.fromisoformat(slow["expires_at"])
        assert (expires - created).total_seconds() == pytest.approx(1.5, abs=0.01)

        assert wait_batch(c, slow["id"], timeout_s=30)["status"] == "expired"
        # the item running at the expiry ends as a cancel leaves it (kept if it finished)
        def settled() -> dict[str, Any] | None:
            b: dict[str, Any] = c.get(f"/api/batches/{slow['id']}").json()
            return b if b["counts"]["running"] == 0 else None

        ended = wait_until(settled, timeout_s=10, what="the running item to settle")
        assert ended["status"] == "expired"
        assert ended["error"]["code"] == "expired"
        n = ended["counts"]
        assert n["queued"] == n["running"] == 0
        assert 1 <= n["succeeded"] < 40 and n["cancelled"] == 40 - n["succeeded"] - n["failed"]
        finished = datetime.fromisoformat(ended["finished_at"])
        assert finished >= expires
        # what finished before the expiry is kept and exported
        rows = jsonl_rows(c, slow["id"])
        assert sum(r["status"] == "succeeded" for r in rows) == n["succeeded"]
        assert all(r["output"] == {"slept": 0.5} for r in rows if r["status"] == "succeeded")

        assert wait_batch(c, quick["id"])["status"] == "completed"
        refused = c.post("/api/batches", json={"task": "echo", "items": [{}],
                                               "expires_after_s": 0})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "expires_after_s"]


def test_max_error_pct_decides_partial_or_failed(server: Server) -> None:
    # 10 records in items of 5; records 2, 5 and 7 fail: 30% of the records, and
    # both items have a failed record.
    records = [{"value": i, "fail": i in (2, 5, 7)} for i in range(10)]
    cases = {None: "partial", 100: "partial", 30: "partial", 29.9: "failed", 0: "failed"}
    with server.client() as c:
        made = {}
        for pct, _ in cases.items():
            extra = {} if pct is None else {"max_error_pct": pct}
            made[pct] = create(c, task="fail", items=records, records_per_item=5,
                               max_attempts=1, **extra)["id"]
        clean = create(c, task="fail", items=[{"value": 1}] * 4, max_error_pct=0)["id"]
        none_ok = create(c, task="fail", items=[{"fail": True}] * 3, max_attempts=1)["id"]
        for pct, status in cases.items():
            b = wait_batch(c, made[pct])
            assert b["max_error_pct"] == (100 if pct is None else pct)
            assert b["records"] == {"total": 10, "succeeded": 7, "failed": 3,
                                    "cancelled": 0}
            assert b["status"] == status, (pct, b)
        assert wait_batch(c, clean)["status"] == "completed"
        assert wait_batch(c, none_ok)["status"] == "failed"  # none succeeded, even at 100%
        bad = c.post("/api/batches", json={"task": "echo", "items": [{}], "max_error_pct": 101})
        assert bad.status_code == 422


# GET /api/usage

def test_usage_shows_the_callers_tenants_metered_usage(server: Server) -> None:
    with server.client() as admin:
        acme = admin.post("/api/keys", json={"tenant": "acme", "role": "user"}).json()["key"]
        other = admin.post("/api/keys", json={"tenant": "other"}).json()["key"]
    this_month = datetime.now(UTC).strftime("%Y-%m")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {acme}"},
                      timeout=30) as c:
        assert c.get("/api/usage").json() == {"tenant": "acme", "period": this_month,
                                             "usage": {}}
        # cpu_sum reports 0.5 USD and one input token per record, per item
        ok = create(c, task="cpu_sum", records_per_item=2, items=[{"n": i} for i in range(6)])
        bad = create(c, task="fail", max_attempts=1, items=[{"fail": True}])
        wait_batch(c, ok["id"])
        wait_batch(c, bad["id"])

        def settled() -> dict[str, Any] | None:
            u = c.get("/api/usage").json()
            return u if u["usage"].get("items_processed") == 4 else None

        u = wait_until(settled, timeout_s=10, what="usage to count every item")
        assert u["tenant"] == "acme" and u["period"] == this_month
        assert u["usage"] == {
            "items_submitted": 4, "records_submitted": 7, "items_processed": 4,
            "items_succeeded": 3, "items_failed": 1, "records_processed": 7,
            "cost_usd": pytest.approx(1.5), "tokens": 6,
        }
        assert c.get("/api/usage", params={"period": this_month}).json() == u
        assert c.get("/api/usage", params={"period": "2001-01"}).json()["usage"] == {}
        for malformed in ("2024-13", "last month", "2024-1"):
            r = c.get("/api/usage", params={"period": malformed})
            assert r.status_code == 422, malformed
            assert r.json()["detail"][0]["loc"] == ["query", "period"]
    with httpx.Client(base_url=server.url, headers={"X-API-Key": other}, timeout=30) as c:
        assert c.get("/api/usage").json()["usage"] == {}  # another tenant's is not shown
    assert httpx.get(f"{server.url}/api/usage").status_code == 401
