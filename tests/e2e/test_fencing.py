"""Fencing, end to end: a worker that lost its lease while its handler still ran.

A worker is paused (SIGSTOP) with an item in hand until its lease runs out;
another worker takes the item and runs it; then the first one goes on (SIGCONT)
and offers its late outcome. That outcome must be discarded, and counted
nowhere: not in the batch's counters, records, cost or tokens, not in the item's
output or attempts, not in the export, not in the tenant's usage.

The ``gated`` task holds each attempt until the test opens its gate file, so the
order of events is the test's, not the scheduler's: no sleeps, no races.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from batchd.store.sqlite.connection import sqlite_path
from tests.conftest import TIME_FACTOR, Server, scaled, wait_batch, wait_until
from tests.e2e.test_crash import export_rows, start_worker
from tests.support.runlog import Run, read_runs

# The kill tests share one xdist worker (--dist loadgroup): run side by side on two
# cores they would only measure each other.
pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("crash")]

# Settings of the workers under test. The lease is scaled: a live worker on a
# busy machine must not lose it before the test pauses it (it renews every lease/3).
LEASE_S = scaled(2.0)
REAP_S = 0.1
POLL_S = 0.1
# No webhook delivery: this test has none, and on Python 3.11 the deliverer's idle
# wait can swallow the cancel of a worker told to stop just as an outcome commits
# (asyncio.wait_for's known race), which hangs the worker's shutdown: a known gap.
WORKER = {"lease_s": LEASE_S, "reap_interval_s": REAP_S, "poll_interval_s": POLL_S,
          "webhook_delivery": "false"}
# Once the paused worker's lease has run out, the other one reaps the item on its
# next pass and claims it on its next poll; the rest is transaction latency.
RERUN_DEADLINE_S = LEASE_S + REAP_S + POLL_S + 10.0  # wait_until scales it again

# What attempt k of ``gated`` reports (see tests/support/tasks.py).
def tokens_in(attempt: int) -> int:
    return 100 * attempt


def cost_usd(attempt: int) -> float:
    return 0.25 * attempt


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def proc_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``T``: stopped by a signal)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def pid_of(w: Server) -> int:
    assert w.proc is not None
    return w.proc.pid


@pytest.fixture
def paused() -> Iterator[list[int]]:
    """Pids the test pauses; each is let go again at teardown, so that it can stop."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def open_transaction(w: Server) -> str | None:
    """What transaction the (paused) worker ``w`` holds open in its database, if any.

    A process paused inside a transaction keeps its locks: on SQLite the write lock,
    which stops every other process's writes; on PostgreSQL its row locks, and in a
    reaper pass the reapers' advisory lock, which stops every other reaper (no lease
    is then recovered until the paused process goes on: a known gap). This test is
    about a worker paused while its handler runs, so it pauses it between transactions.
    """
    if w.database_url.startswith("postgresql"):
        import psycopg

        ports = [c.laddr.port for c in psutil.Process(pid_of(w)).net_connections(kind="tcp")]

        def settled() -> list[tuple[Any, ...]] | None:
            with psycopg.connect(w.database_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT state, query FROM pg_stat_activity WHERE datname = "
                    "current_database() AND client_port = ANY(%s) AND state <> 'idle'",
                    (ports,)).fetchall()
            # A statement sent just before the pause still runs to its end.
            return None if any(state == "active" for state, _ in rows) else rows

        [rows] = wait_until(lambda: (found := settled()) is not None and [found],
                            timeout_s=10, what="the paused worker's statements to end")
        return "; ".join(f"{state}: {query}" for state, query in rows) or None
    lock = sqlite3.connect(sqlite_path(w.database_url), isolation_level=None,
                           timeout=scaled(2))
    try:
        lock.execute("BEGIN IMMEDIATE")  # writes nothing; fails only if the lock is held
    except sqlite3.OperationalError as exc:
        return f"holds the SQLite write lock ({exc})"
    finally:
        lock.close()
    return None


def pause_between_transactions(w: Server, paused: list[int]) -> int:
    """SIGSTOP ``w`` at a moment it holds no transaction open; how many tries it took."""
    pid = pid_of(w)
    paused.append(pid)
    for tries in range(1, 51):
        os.kill(pid, signal.SIGSTOP)
        wait_until(lambda: proc_state(pid) == "T", timeout_s=10, what="the worker to stop")
        held = open_transaction(w)
        if held is None:
            return tries
        print(f"paused inside a transaction ({held}); again")
        os.kill(pid, signal.SIGCONT)
        time.sleep(random.uniform(0.01, 0.1))  # jitter: off the rhythm of its loops
    raise AssertionError("could not pause the worker between two transactions")


def runs_of(run_log: Path, what: str, attempt: int) -> list[Run]:
    return [r for r in read_runs(run_log) if r.what == what and r.attempt == attempt]


def seen(c: httpx.Client, batch_id: str, item_id: str) -> dict[str, Any]:
    """Everything a user can see of the batch, the item and the tenant's usage."""
    batch = c.get(f"/api/batches/{batch_id}")
    item = c.get(f"/api/batches/{batch_id}/items/{item_id}")
    usage = c.get("/api/usage")
    for r in (batch, item, usage):
        assert r.status_code == 200, r.text
    return {"batch": batch.json(), "item": item.json(), "usage": usage.json(),
            "export": export_rows(c, batch_id)}


@pytest.mark.parametrize("late", ["after the re-run finished", "while the re-run runs"])
def test_fencing_late_outcome_of_a_paused_worker_counts_nowhere(
    make_server: Callable[..., Server], run_log: Path, tmp_path: Path, paused: list[int],
    late: str,
) -> None:
    api = make_server(run_worker="false")  # only the two workers run (and reap) items
    first = start_worker(make_server, **WORKER)
    gate = tmp_path / "gate"
    with api.client() as c:
        r = c.post("/api/batches", json={
            "task": "gated", "max_attempts": 3, "retry_backoff_s": 0,
            "items": [{"n": 7, "gate": str(gate)}],
        })
        assert r.status_code == 201, r.text
        batch_id = r.json()["id"]

        [run1] = wait_until(lambda: runs_of(run_log, "start", 1), timeout_s=30,
                            what="the first worker to start the item")
        assert run1.pid == pid_of(first)
        item_id = run1.item_id
        item = c.get(f"/api/batches/{batch_id}/items/{item_id}").json()
        assert item["status"] == "running" and item["attempts"] == 1, item
        claimed_at = epoch(item["started_at"])

        # The second worker is up and idle before the first one stops: the item is
        # leased, so it waits; once the lease runs out it is its to take.
        second = start_worker(make_server, **WORKER)
        tries = pause_between_transactions(first, paused)

        [run2] = wait_until(lambda: runs_of(run_log, "start", 2), timeout_s=RERUN_DEADLINE_S,
                            what="the second worker to take the item over")
        assert run2.pid == pid_of(second) and run2.item_id == item_id
        # The lease was honoured: nobody took the item before it ran out.
        assert run2.at >= claimed_at + LEASE_S - 1e-3, (run2.at - claimed_at, LEASE_S)
        item = c.get(f"/api/batches/{batch_id}/items/{item_id}").json()
        assert item["status"] == "running" and item["attempts"] == 2, item

        before: dict[str, Any] | None = None
        if late == "after the re-run finished":
            (gate.parent / f"{gate.name}.2").touch()
            done = wait_batch(c, batch_id, timeout_s=30)
            assert done["status"] == "completed", done
            before = seen(c, batch_id, item_id)

        # The first worker was paused all along: its attempt is still in its hands.
        assert proc_state(pid_of(first)) == "T"
        assert not runs_of(run_log, "end", 1), "the first attempt ended while paused"
        (gate.parent / f"{gate.name}.1").touch()
        os.kill(pid_of(first), signal.SIGCONT)
        [end1] = wait_until(lambda: runs_of(run_log, "end", 1), timeout_s=30,
                            what="the first worker's late outcome")
        assert end1.pid == pid_of(first)
        # On SIGTERM a worker waits for its handlers and records their outcomes
        # before it exits: once it is gone, its late outcome was offered and answered.
        first.stop()
        assert first.proc is not None and first.proc.returncode == 0, first.log_since_start()
        log = first.log_since_start()
        for bad in ("Traceback", "could not record", "ERROR", "Exception"):
            assert bad not in log, f"the paused worker's log shows {bad!r}:\n{log[-3000:]}"

        if late == "while the re-run runs":
            # Offered while attempt 2 was running: only the fencing token tells them apart.
            assert not runs_of(run_log, "end", 2), "the re-run ended before the late outcome"
            now = seen(c, batch_id, item_id)
            it = now["item"]
            assert (it["status"], it["attempts"], it["output"]) == ("running", 2, None), (
                f"the late outcome was recorded while attempt 2 ran: {it['status']}, "
                f"attempts {it['attempts']}, output {it['output']}, usage {it['usage']}")
            assert now["batch"]["counts"]["running"] == 1, now["batch"]
            assert now["batch"]["counts"]["succeeded"] == 0, now["batch"]
            assert now["batch"]["records"]["succeeded"] == 0, now["batch"]
            assert now["batch"]["cost"]["actual_usd"] == 0, now["batch"]
            assert now["batch"]["cost"]["tokens_in"] == 0, now["batch"]
            assert now["export"] == [], now["export"]
            (gate.parent / f"{gate.name}.2").touch()
            done = wait_batch(c, batch_id, timeout_s=30)
            assert done["status"] == "completed", done

        after = seen(c, batch_id, item_id)

    # Only the second attempt shows, anywhere.
    b = after["batch"]
    assert b["counts"] == {"total": 1, "queued": 0, "running": 0, "succeeded": 1, "failed": 0,
                           "cancelled": 0}, b
    assert b["records"] == {"total": 1, "succeeded": 1, "failed": 0,
                            "cancelled": 0}, b
    assert b["cost"]["tokens_in"] == tokens_in(2), b["cost"]
    assert b["cost"]["tokens_out"] == 2, b["cost"]
    assert b["cost"]["actual_usd"] == pytest.approx(cost_usd(2)), b["cost"]
    assert b["cost"]["reserved_usd"] == 0, b["cost"]
    it = after["item"]
    assert it["status"] == "succeeded" and it["attempts"] == 2, it
    assert it["output"] == {"n": 7, "attempt": 2, "pid": pid_of(second)}, it
    assert it["usage"] == {"tokens_in": tokens_in(2), "tokens_out": 2,
                           "cost_usd": pytest.approx(cost_usd(2))}, it
    [row] = after["export"]
    assert row["item_id"] == item_id and row["status"] == "succeeded", row
    assert row["output"] == it["output"], row
    usage = after["usage"]["usage"]
    expected = {"items_processed": 1, "items_succeeded": 1, "items_failed": 0,
                "records_processed": 1, "tokens": tokens_in(2) + 2,
                "cost_usd": pytest.approx(cost_usd(2))}
    assert {k: usage.get(k, 0) for k in expected} == expected, usage
    if before is not None:
        assert after == before, "the late outcome changed what users see"

    # Each attempt ran once, in the worker that claimed it.
    runs = sorted((r.attempt, r.what, r.pid) for r in read_runs(run_log))
    assert runs == [(1, "end", pid_of(first)), (1, "start", pid_of(first)),
                    (2, "end", pid_of(second)), (2, "start", pid_of(second))], runs
    print(f"\nlease {LEASE_S:g} s (time factor {TIME_FACTOR:g}); re-run "
          f"{run2.at - claimed_at:.3f} s after the first claim; paused at try {tries}; "
          f"late outcome {late}")
