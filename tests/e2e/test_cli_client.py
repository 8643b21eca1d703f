"""The `batchd` CLI and the Python clients against a real server."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchd.client import AsyncClient, BatchdHTTPError, Client
from tests.conftest import ROOT, Server, scaled

pytestmark = pytest.mark.timeout(scaled(120))

EXAMPLE = ROOT / "examples" / "sales.csv"


def cli(server: Server, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATCHD_URL": server.url, "BATCHD_API_KEY": key or server.admin_key,
           "COLUMNS": "120"}
    # In the test's own directory: nothing the CLI might write lands in the checkout.
    return subprocess.run([sys.executable, "-m", "batchd.cli.main", *args], env=env,
                          cwd=server.log_path.parent, capture_output=True, text=True,
                          timeout=scaled(120))


def expected_total(row: dict[str, str]) -> float:
    return round(float(row["price"]) * float(row["quantity"]) * (1 + float(row["tax"])), 2)


def test_cli_submit_wait_and_results_write_correct_totals(server: Server, tmp_path: Path) -> None:
    done = cli(server, "submit", "sales", str(EXAMPLE), "--wait")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.strip().splitlines()[-1]
    assert batch_id.startswith("bat_")
    assert "━" in done.stderr and "completed" in done.stderr  # the rich progress bar
    out = tmp_path / "totals.csv"
    got = cli(server, "results", batch_id, "-o", str(out))
    assert got.returncode == 0, got.stderr
    with EXAMPLE.open() as f:
        inputs = list(csv.DictReader(f))
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(inputs) == 500
    for src, row in zip(inputs, rows, strict=True):
        assert row["status"] == "succeeded"
        assert float(row["input.price"]) == float(src["price"])
        assert float(row["output.total"]) == expected_total(src)
    status = cli(server, "status", batch_id)
    assert "completed" in status.stdout


def test_cli_keys_create_prints_the_key_alone_on_the_last_line(server: Server) -> None:
    done = cli(server, "keys", "create", "--tenant", "acme", "--role", "supervisor",
               "--tier", "pro", "--owner", "alice")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("bd_") and " " not in key
    tasks = cli(server, "tasks", key=key)
    assert tasks.returncode == 0 and "sales" in tasks.stdout


def test_cli_keys_create_operator_only_with_an_operator_key(server: Server) -> None:
    admin = server.new_key("acme", role="admin")
    for args in (["--tenant", "acme", "--role", "operator"],
                 ["--tenant", "globex", "--role", "user"]):
        denied = cli(server, "keys", "create", *args, key=admin)
        assert denied.returncode == 1 and "error 403" in denied.stderr, (args, denied.stderr)
    mine = cli(server, "keys", "create", "--tenant", "acme", "--role", "admin", key=admin)
    assert mine.returncode == 0, mine.stderr
    assert "(role admin," in mine.stderr
    made = cli(server, "keys", "create", "--tenant", "default", "--role", "operator")
    assert made.returncode == 0 and "(role operator," in made.stderr, made.stderr
    again = cli(server, "keys", "create", "--tenant", "globex", "--role", "user",
                key=made.stdout.strip().splitlines()[-1])
    assert again.returncode == 0, again.stderr


def test_cli_cancel_and_errors(server: Server, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join('{"seconds": 30}\n' for _ in range(3)))
    done = cli(server, "submit", "sleep", str(jobs), "--parallelism", "1")
    batch_id = done.stdout.strip().splitlines()[-1]
    cancelled = cli(server, "cancel", batch_id, "--reason", "changed my mind")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    missing = cli(server, "status", "bat_missing")
    assert missing.returncode == 1 and "404" in missing.stderr
    bad_key = cli(server, "tasks", key="bd_wrong")
    assert bad_key.returncode == 1 and "401" in bad_key.stderr


def test_client_submit_wait_iter_results_and_cancel(server: Server) -> None:
    snapshots: list[dict[str, object]] = []
    with Client(server.url, api_key=server.admin_key) as c:
        b = c.submit("square", ({"n": n} for n in range(50)), parallelism=4)
        final = c.wait(b["id"], poll_s=0.05, on_progress=snapshots.append)
        assert final["status"] == "completed" and snapshots[-1] is final
        rows = list(c.iter_results(b["id"]))
        assert [r["output"]["square"] for r in rows] == [n * n for n in range(50)]
        slow = c.submit("sleep", [{"seconds": 30}], idempotency_key="k-1")
        assert c.submit("sleep", [{"seconds": 30}], idempotency_key="k-1")["id"] == slow["id"]
        assert c.cancel(slow["id"], "stop")["status"] == "cancelled"
        with pytest.raises(BatchdHTTPError) as err:
            c.get("bat_nope")
        assert err.value.status_code == 404


async def test_async_client_submit_file_wait_and_stream(server: Server) -> None:
    seen: list[int] = []
    async with AsyncClient(server.url, api_key=server.admin_key) as c:
        b = await c.submit("sales", file=EXAMPLE, records_per_item=100)
        final = await c.wait(b["id"], poll_s=0.05,
                             on_progress=lambda s: seen.append(s["counts"]["succeeded"]))
        assert final["status"] == "completed" and final["counts"]["total"] == 5
        totals = [r["output"]["total"] async for r in c.iter_results(b["id"])]
    assert len(totals) == 500 and seen[-1] == 5
