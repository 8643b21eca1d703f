"""The database itself crashes, again and again, under a running batch.

A PostgreSQL cluster of this test's own (never the shared server) is stopped in
``immediate`` mode (every backend killed mid-transaction, no checkpoint) and
started again several times while an API server and two workers work through an
80,000-item batch. Nobody restarts batchd: the server and the workers must notice,
answer clearly meanwhile, reconnect by themselves and go on, losing nothing and
recording no outcome twice. A group commit cut off by a crash is retried once the
database is back; if the items' leases ran out first, they run again and the late
outcome is refused by its fencing token.

Always runs on its own cluster, whatever BATCHD_TEST_BACKEND says.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Server, scaled, wait_until
from tests.e2e.test_crash import (
    all_items,
    export_rows,
    ndjson_body,
    past,
    start_worker,
)
from tests.support.pgcluster import PgCluster, pg_cluster
from tests.support.runlog import Run, read_runs

# The kill tests share one xdist worker (--dist loadgroup): run side by side on two
# cores they would only measure each other.
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("crash")]

N_ITEMS = 80_000
LEASE_S = 2.0
SETTINGS = {"lease_s": LEASE_S, "reap_interval_s": 0.25, "poll_interval_s": 0.1}
# How long each outage lasts at least, once every process has noticed it. The long
# ones outlive every lease taken before the crash: the items in flight then are
# reaped after the restart, and the outcomes the workers still hold for them must
# be refused by fencing when they finally arrive.
OUTAGES_S = (0.0, LEASE_S + 1.0, 0.0, LEASE_S + 1.0, 0.5, LEASE_S + 1.0)
LOST = "database connection lost"  # what a process logs when it notices
BACK = "database reachable again"  # and when it has reconnected
CUT = "could not record"  # what a worker logs when a group commit failed


def recorded_in_db(cluster: PgCluster) -> dict[int, tuple[int, bytes]]:
    """Every recorded success as the database holds it: item row id → (attempt, output).

    Read straight from the cluster (the store's own tables): in milliseconds, right
    before a crash, so that the commits the crash is most likely to lose are in it.
    """
    with psycopg.connect(cluster.socket_url("batchd"), connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT i.id, i.attempts, o.data FROM items i JOIN item_outputs o ON o.id = i.id "
            "WHERE i.status = 'succeeded'"
        ).fetchall()
    return {r[0]: (r[1], bytes(r[2])) for r in rows}


def changed(before: dict[int, tuple[int, bytes]], now: dict[int, tuple[int, bytes]]
            ) -> list[tuple[int, tuple[int, bytes], tuple[int, bytes] | None]]:
    return [(i, was, now.get(i)) for i, was in before.items() if now.get(i) != was]


@dataclass
class Outage:
    """One crash: when it began and ended, what the API said meanwhile."""

    crashed_at: float
    recorded: int  # successes recorded just before the crash
    restarted_at: float = 0.0
    probe: httpx.Response | None = None
    probe_s: float = 0.0
    noticed_s: float = 0.0  # until the last process noticed
    back_s: float = 0.0  # from the restart until the last process reconnected
    cut_commits: int = 0  # group commits the crash cut off
    lost: list[Any] = field(default_factory=list)  # recorded outcomes the crash changed

    def __str__(self) -> str:
        return (f"after {self.recorded} recorded: down {self.restarted_at - self.crashed_at:.1f}"
                f" s (503 after {self.probe_s:.2f} s, all noticed after {self.noticed_s:.1f} s,"
                f" {self.cut_commits} group commits cut off), all reconnected"
                f" {self.back_s:.1f} s after the restart")


class Crasher:
    """Crashes the cluster and restarts it; checks that every batchd process noticed
    and reconnected by itself, and that every recorded outcome survived."""

    def __init__(self, cluster: PgCluster, *, api: Server, workers: list[Server],
                 run_log: Path) -> None:
        self.cluster = cluster
        self.api = api
        self.workers = workers
        self.processes = [api, *workers]
        self.run_log = run_log
        self.outages: list[Outage] = []
        self.snapshots: list[dict[int, tuple[int, bytes]]] = []

    def _since(self, offsets: dict[int, int], p: Server) -> str:
        with p.log_path.open("rb") as f:
            f.seek(offsets[id(p)])
            return f.read().decode(errors="replace")

    def _pids_running_since(self, offset: int) -> set[int]:
        return {run.pid for run in read_runs(self.run_log, offset=offset)}

    def _api_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api.url}/healthz", timeout=scaled(5)).status_code == 200
        except httpx.HTTPError:
            return False

    def _nothing_queued(self, batch_id: str) -> bool:
        with self.api.client() as c:
            r = c.get(f"/api/batches/{batch_id}")
        return r.status_code == 200 and r.json()["counts"]["queued"] == 0

    def outage(self, batch_id: str, *, min_down_s: float) -> Outage:
        offsets = {id(p): p.log_path.stat().st_size for p in self.processes}
        before = recorded_in_db(self.cluster)
        self.snapshots.append(before)
        self.cluster.crash()
        out = Outage(crashed_at=time.time(), recorded=len(before))
        self.outages.append(out)

        # A request that needs the database gets a clear, retryable answer, soon.
        t0 = time.monotonic()
        with httpx.Client(base_url=self.api.url, timeout=scaled(30),
                          headers={"Authorization": f"Bearer {self.api.admin_key}"}) as c:
            out.probe = c.get(f"/api/batches/{batch_id}")
        out.probe_s = time.monotonic() - t0
        assert_clear_unavailable(out)
        for p in self.processes:
            wait_until(lambda p=p: LOST in self._since(offsets, p), timeout_s=15,
                       what=f"{p.log_path.name} to notice the crash")
        out.noticed_s = time.time() - out.crashed_at
        time.sleep(max(0.0, out.crashed_at + min_down_s - time.time()))  # the outage itself

        self.cluster.restart()
        out.restarted_at = time.time()
        runs_offset = self.run_log.stat().st_size
        out.lost = changed(before, recorded_in_db(self.cluster))
        # The API server reconnects on its next request; the workers never stop asking.
        wait_until(self._api_healthy, timeout_s=30, what="the API to answer again")
        for p in self.processes:
            wait_until(lambda p=p: BACK in self._since(offsets, p), timeout_s=30,
                       what=f"{p.log_path.name} to reconnect")
            assert p.proc is not None and p.proc.poll() is None, f"{p.log_path.name} exited"
        # ... and back at work: each worker runs items again, unless nothing is left
        # for it to claim (near the end of the batch, the other worker may hold the
        # last items; idle then is right, idle with items queued is not).
        pids = {w.proc.pid for w in self.workers if w.proc is not None}

        def at_work() -> bool:
            return pids <= self._pids_running_since(runs_offset) or self._nothing_queued(batch_id)

        wait_until(at_work, timeout_s=30, what="every worker to run items again")
        out.back_s = time.time() - out.restarted_at
        out.cut_commits = sum(self._since(offsets, w).count(CUT) for w in self.workers)
        print(f"crash {len(self.outages)}: {out}", flush=True)
        return out


def assert_clear_unavailable(out: Outage) -> None:
    """503, saying what is wrong and that a retry will do, without making the client wait."""
    p = out.probe
    assert p is not None
    assert p.status_code == 503, (p.status_code, p.text)
    assert "database unavailable" in p.json()["detail"], p.text
    assert p.headers.get("Retry-After"), p.headers
    assert out.probe_s < scaled(10), f"the API took {out.probe_s:.1f} s to answer: {p.text}"


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    # Requested before make_server: torn down after every batchd process has stopped.
    with pg_cluster() as c:
        yield c


def test_database_crashes_lose_and_duplicate_nothing(
    cluster: PgCluster, make_server: Callable[..., Server], run_log: Path
) -> None:
    with psycopg.connect(cluster.socket_url(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE batchd")
    url = cluster.url("batchd")
    api = make_server(database_url=url, run_worker="false", **SETTINGS)
    workers = [start_worker(make_server, database_url=url, **SETTINGS) for _ in range(2)]
    crasher = Crasher(cluster, api=api, workers=workers, run_log=run_log)

    # Every crash can cut off each in-flight item once: attempts never run out. No
    # retry backoff: a lost lease is not the item's fault.
    params: dict[str, Any] = {
        "task": "square", "max_attempts": 100, "retry_backoff_s": 0, "parallelism": 1000,
    }
    with api.client() as c:
        r = c.post("/api/batches", params=params, content=ndjson_body(N_ITEMS),
                   headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 201, r.text
        batch_id = r.json()["id"]
        assert r.json()["counts"]["total"] == N_ITEMS

    for k, min_down_s in enumerate(OUTAGES_S):
        threshold = N_ITEMS * (k + 1) // (len(OUTAGES_S) + 2)
        b = wait_until(functools.partial(past, api, batch_id, threshold),
                       timeout_s=180, what=f"progress past {threshold}")
        assert b["status"] == "closed", f"batch finished before crash {k}: {b['counts']}"
        out = crasher.outage(batch_id, min_down_s=min_down_s)
        # Every outcome recorded before the crash is still there, unchanged.
        assert not out.lost, f"crash {k} lost {len(out.lost)} recorded outcomes: {out.lost[:3]}"

    # Done, exactly once each (the counters add up at every look on the way; the last
    # success and the batch's completion commit together).
    b = wait_until(functools.partial(past, api, batch_id, N_ITEMS), timeout_s=300,
                   what="the batch to finish")
    assert b["counts"] == {"total": N_ITEMS, "queued": 0, "running": 0,
                           "succeeded": N_ITEMS, "failed": 0, "cancelled": 0}
    assert b["records"] == {"total": N_ITEMS, "succeeded": N_ITEMS, "failed": 0,
                            "cancelled": 0}
    assert b["status"] == "completed", b
    with api.client() as c:
        rows = export_rows(c, batch_id)
        attempts = {it["id"]: it["attempts"] for it in all_items(c, batch_id)}
    assert len(rows) == N_ITEMS
    assert sorted(row["seq"] for row in rows) == list(range(N_ITEMS)), "lost or duplicated"
    assert {row["item_id"] for row in rows} == set(attempts)
    for row in rows:
        n = row["input"]["n"]
        assert row["status"] == "succeeded" and n == row["seq"], row
        out = row["output"]
        assert (out["n"], out["square"]) == (n, n * n), row
        # The outcome kept is the recorded attempt's own, not a late one of an earlier.
        assert out["attempt"] == attempts[row["item_id"]], (row, attempts[row["item_id"]])

    # Nothing recorded before any crash changed later either (by a late re-run).
    final = recorded_in_db(cluster)
    for k, snap in enumerate(crasher.snapshots):
        later = changed(snap, final)
        assert not later, f"{len(later)} outcomes recorded before crash {k} changed: {later[:3]}"

    # The run log: each claim ran at most once, the recorded attempt is the last one
    # that ran, and an item ran again only when a crash cut it off.
    by_item: dict[str, list[Run]] = defaultdict(list)
    runs = read_runs(run_log)
    for run in runs:
        by_item[run.item_id].append(run)
    assert set(by_item) == set(attempts), "an item never ran, or something else did"
    allowance_s = scaled(10.0)  # ran, then lost with its group commit or its lease
    unexplained: list[tuple[str, list[Run]]] = []
    for item_id, rs in by_item.items():
        rs.sort(key=lambda r: r.attempt)
        tries = [r.attempt for r in rs]
        assert len(set(tries)) == len(tries), f"{item_id} ran twice in one attempt: {rs}"
        assert tries[-1] == attempts[item_id], (item_id, rs, attempts[item_id])
        for run, nxt in zip(rs, rs[1:], strict=False):
            if not any(o.crashed_at - allowance_s <= run.at <= o.restarted_at <= nxt.at
                       for o in crasher.outages):
                unexplained.append((item_id, rs))
    rerun = sum(1 for rs in by_item.values() if len(rs) > 1)
    assert not unexplained, f"{len(unexplained)} items re-ran with no crash: {unexplained[:3]}"
    # Each crash hit work in flight: outcomes on their way to the database.
    idle = [k for k, o in enumerate(crasher.outages) if not o.cut_commits]
    assert not idle, f"crashes {idle} cut off no group commit: they exercised nothing"

    # No process exited or crashed. (Each outage checked that the API answered clearly
    # meanwhile, and that every process reconnected and went back to work.)
    for p in crasher.processes:
        assert p.proc is not None and p.proc.poll() is None, f"{p.log_path.name} exited"
        text = p.log_path.read_text()
        assert "Traceback" not in text, f"{p.log_path.name}: {text[-3000:]}"
    assert cluster.crashes == len(OUTAGES_S) >= 5
    print(f"crashes: {cluster.crashes}; items run more than once: {rerun}; "
          f"max attempts: {max(attempts.values())}")
