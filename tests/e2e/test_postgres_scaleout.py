"""Scale-out on PostgreSQL: several API servers and workers on one database.

These tests always run on PostgreSQL, whatever BATCHD_TEST_BACKEND says: each
gets a fresh database of its own. Without a reachable server they are skipped,
unless BATCHD_TEST_REQUIRE_PG is set (CI), where that is a failure.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import (
    PG_ADMIN_URL,
    Server,
    create_pg_database,
    drop_database,
    wait_batch,
    wait_until,
)
from tests.e2e.test_crash import (
    _worker_up,
    assert_counts_add_up,
    export_rows,
    ndjson_body,
    past,
    start_worker,
)


def _pg_reachable() -> bool:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(
        not os.environ.get("BATCHD_TEST_REQUIRE_PG") and not _pg_reachable(),
        reason=f"PostgreSQL is not reachable at {PG_ADMIN_URL}",
    ),
    pytest.mark.timeout(240),
]


@pytest.fixture
def pg_server(make_server: Callable[..., Server]) -> Iterator[Callable[..., Server]]:
    """``make_server`` on a fresh PostgreSQL database of this test's own."""
    url = create_pg_database()
    started: list[Server] = []

    def make(**kw: Any) -> Server:
        srv = make_server(database_url=url, **kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:  # before the drop, which would cut them off mid-query
        srv.stop()
    drop_database(url)


@dataclass(frozen=True)
class Run:
    item_id: str
    attempt: int
    pid: int
    what: str
    at: float


def read_runs(run_log: Path) -> list[Run]:
    if not run_log.exists():
        return []
    runs = []
    for line in run_log.read_text().splitlines():
        item_id, attempt, pid, what, at = line.split()
        runs.append(Run(item_id, int(attempt), int(pid), what, float(at)))
    return runs


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def all_items(c: httpx.Client, batch_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = c.get(f"/api/batches/{batch_id}/items", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        items.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


# ---------------------------------------------------------------------------
# kill -9 of random workers, again and again


N_ITEMS = 50_000
N_WORKERS = 3
KILLS = 11
LEASE_S = 2.0
WORKER_SETTINGS = {"lease_s": LEASE_S, "reap_interval_s": 0.25, "poll_interval_s": 0.1}
# After a kill, an orphaned item waits out its lease (≤ LEASE_S: the last renewal
# was before the kill), then for the next reaper pass (0.25 s) and a claim
# (workers are busy, or poll every 0.1 s). The allowance covers those two plus
# transaction latency on a loaded machine.
RECOVERY_ALLOWANCE_S = 1.5


class WorkerPool:
    """Keeps ``size`` workers running; kills random ones, remembering when each died."""

    def __init__(
        self, make_server: Callable[..., Server], *, size: int, rng: random.Random,
        **settings: Any,
    ) -> None:
        self.make_server = make_server
        self.settings = settings
        self.rng = rng
        self.live = [start_worker(make_server, **settings) for _ in range(size)]
        self.killed_at: dict[int, float] = {}
        self.moments: list[str] = []

    def kill_random(self, moment: str) -> None:
        """SIGKILL a random one of the workers at work; start another in its place.

        The replacement is not waited for: the batch goes on meanwhile.
        """
        up = wait_until(lambda: [w for w in self.live if _worker_up(w)], timeout_s=30,
                        what="a worker at work")
        w = self.rng.choice(up)
        assert w.proc is not None
        self.killed_at[w.proc.pid] = time.time()  # before the signal: delays err long
        w.kill()
        self.moments.append(f"{moment} ({len(up)} at work)")
        self.live.remove(w)
        self.live.append(self.make_server(command="worker", **self.settings))

    def wait_all_up(self) -> None:
        for w in self.live:
            wait_until(functools.partial(_worker_up, w), timeout_s=30, what="worker start")


def test_postgres_crash_workers_killed_lose_and_duplicate_nothing(
    pg_server: Callable[..., Server], run_log: Path
) -> None:
    api_a = pg_server(run_worker="false")
    api_b = pg_server(run_worker="false")
    seed = random.randrange(1 << 32)
    print(f"\nworker kill seed: {seed}")
    pool = WorkerPool(pg_server, size=N_WORKERS, rng=random.Random(seed), **WORKER_SETTINGS)

    # Each kill can orphan an item at most once, so with this many attempts a kill
    # never turns into a failed item. No retry backoff: a lost lease is not the
    # item's fault, and the recovery bound below is then lease + reaper + claim.
    # Parallelism well above one worker's claim (256 items): all three take part,
    # so whichever is killed has items in flight.
    params: dict[str, Any] = {
        "task": "square", "max_attempts": 30, "retry_backoff_s": 0, "parallelism": 1000,
    }
    headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": "pg-scaleout-crash"}
    with api_a.client() as a:
        r = a.post("/api/batches", params=params, headers=headers, content=ndjson_body(N_ITEMS))
        assert r.status_code == 201, r.text
        batch_id = r.json()["id"]
        assert r.json()["counts"]["total"] == N_ITEMS

    recorded = 0
    for k in range(KILLS):
        threshold = N_ITEMS * (k + 1) // (KILLS + 2)
        b = wait_until(functools.partial(past, api_b, batch_id, threshold), timeout_s=90,
                       what=f"progress past {threshold}")
        assert b["status"] == "closed", f"batch finished before kill {k}: {b['counts']}"
        assert b["counts"]["succeeded"] >= recorded, "a recorded result was lost in a kill"
        recorded = b["counts"]["succeeded"]
        pool.kill_random(f"after {recorded} succeeded")

    pool.wait_all_up()
    with api_b.client() as c:
        b = wait_batch(c, batch_id, timeout_s=120)
        assert b["status"] == "completed", b
        assert b["counts"] == {"total": N_ITEMS, "queued": 0, "running": 0,
                               "succeeded": N_ITEMS, "failed": 0, "cancelled": 0}
        assert b["records"] == {"total": N_ITEMS, "succeeded": N_ITEMS, "failed": 0}

        rows = export_rows(c, batch_id)
        assert len(rows) == N_ITEMS
        assert sorted(row["seq"] for row in rows) == list(range(N_ITEMS)), "lost or duplicated"
        for row in rows:
            assert row["status"] == "succeeded", row
            n = row["input"]["n"]
            assert n == row["seq"], row
            assert row["output"] == {"n": n, "square": n * n}, row

        attempts = {it["id"]: it["attempts"] for it in all_items(c, batch_id)}
        assert len(attempts) == N_ITEMS
        assert {row["item_id"] for row in rows} == set(attempts)
        assert [x["id"] for x in c.get("/api/batches").json()["data"]] == [batch_id]

        # The Idempotency-Key given to A holds on B too: the same upload is a replay.
        r = c.post("/api/batches", params=params, headers=headers, content=ndjson_body(N_ITEMS))
        assert r.status_code == 201, r.text
        assert r.headers.get("Idempotent-Replayed") == "true"
        assert r.json()["id"] == batch_id
        assert [x["id"] for x in c.get("/api/batches").json()["data"]] == [batch_id]

    # The run log: every item ran; a re-run only followed a kill, and came soon.
    by_item: dict[str, list[Run]] = defaultdict(list)
    for run in read_runs(run_log):
        by_item[run.item_id].append(run)
    assert set(by_item) == set(attempts), "an item never ran, or something else did"
    killed_at = pool.killed_at
    delays: list[float] = []
    slow: list[tuple[str, float]] = []
    # Claims lost to a kill before they ran leave no line, only a gap in attempts.
    # Which worker held one is unknown: its recovery is timed from the last kill
    # before the next run, which can only make that delay look shorter.
    lost_unrun = 0

    def recovered(item_id: str, delay: float) -> None:
        delays.append(delay)
        if delay > LEASE_S + RECOVERY_ALLOWANCE_S:
            slow.append((item_id, round(delay, 3)))

    def last_kill_before(item_id: str, t: float) -> float:
        earlier = [k for k in killed_at.values() if k < t]
        assert earlier, f"{item_id} lost a claim with no kill"
        return max(earlier)

    for item_id, rs in by_item.items():
        rs.sort(key=lambda r: r.attempt)
        tries = [r.attempt for r in rs]
        assert len(set(tries)) == len(tries), f"{item_id} ran twice in one attempt: {rs}"
        # The recorded outcome is the last claim's, and that claim ran.
        assert rs[-1].attempt == attempts[item_id], (item_id, rs, attempts[item_id])
        if rs[0].attempt > 1:
            lost_unrun += rs[0].attempt - 1
            recovered(item_id, rs[0].at - last_kill_before(item_id, rs[0].at))
        for run, nxt in zip(rs, rs[1:], strict=False):
            assert run.pid in killed_at, f"{item_id} re-ran with no kill: {rs}"
            if nxt.attempt == run.attempt + 1:
                recovered(item_id, nxt.at - killed_at[run.pid])
            else:
                lost_unrun += nxt.attempt - run.attempt - 1
                recovered(item_id, nxt.at - last_kill_before(item_id, nxt.at))

    rerun = sum(1 for rs in by_item.values() if len(rs) > 1)
    print(f"kills: {len(pool.moments)} ({'; '.join(pool.moments)})")
    print(f"items run more than once: {rerun} of {N_ITEMS} "
          f"(claims lost before they ran: {lost_unrun}; "
          f"max runs of one item: {max(len(rs) for rs in by_item.values())}, "
          f"max attempts: {max(attempts.values())})")
    if delays:
        print(f"recovery delay after a kill ({len(delays)} re-runs): max {max(delays):.3f} s, "
              f"median {sorted(delays)[len(delays) // 2]:.3f} s (lease {LEASE_S} s)")
    assert not slow, (
        f"{len(slow)} orphaned items ran again later than lease + {RECOVERY_ALLOWANCE_S} s: "
        f"{slow[:5]}"
    )
    assert len(pool.moments) >= 10
    assert rerun > 0, "no kill interrupted a run: the test exercised nothing"

    for p in (api_a, api_b, *pool.live):
        text = p.log_path.read_text()
        assert "Traceback" not in text, f"{p.log_path.name}: {text[-2000:]}"
        assert "database is busy" not in text, f"{p.log_path.name}: {text[-2000:]}"


# ---------------------------------------------------------------------------
# two API servers, one database


N_SLOW = 40
N_EXPORT = 3000


def test_batch_on_server_a_is_visible_cancellable_and_exportable_on_server_b(
    pg_server: Callable[..., Server], run_log: Path
) -> None:
    # Each with its own worker; few slots each, so both take part in the slow batch.
    srv_a = pg_server(worker_concurrency=8)
    srv_b = pg_server(worker_concurrency=8)
    key = srv_a.new_key("acme")  # made on A, honoured on B: keys live in the database
    with srv_a.client(key) as a, srv_b.client(key) as b:
        r = a.post("/api/batches", json={
            "task": "tracked", "parallelism": 16,
            "items": [{"n": i, "seconds": 120} for i in range(N_SLOW)],
        })
        assert r.status_code == 201, r.text
        slow_id = r.json()["id"]

        r = b.get(f"/api/batches/{slow_id}")
        assert r.status_code == 200, r.text
        assert r.json()["task"] == "tracked" and r.json()["counts"]["total"] == N_SLOW
        assert slow_id in [x["id"] for x in b.get("/api/batches").json()["data"]]
        items = all_items(b, slow_id, limit=15)
        assert [it["seq"] for it in items] == list(range(N_SLOW))
        assert [it["input"]["n"] for it in items] == list(range(N_SLOW))
        r = b.get(f"/api/batches/{slow_id}/items/{items[7]['id']}")
        assert r.status_code == 200 and r.json()["input"] == {"n": 7, "seconds": 120}, r.text

        # Running in both servers' workers, then cancelled through B.
        wait_until(lambda: len({r.pid for r in read_runs(run_log)}) == 2, timeout_s=30,
                   what="both workers to run items")
        wait_until(lambda: b.get(f"/api/batches/{slow_id}").json()["counts"]["running"] == 16,
                   timeout_s=30, what="the batch to fill its parallelism")
        r = b.post(f"/api/batches/{slow_id}/cancel", json={"reason": "changed my mind"})
        assert r.status_code == 200, r.text
        seen = a.get(f"/api/batches/{slow_id}").json()
        assert seen["status"] == "cancelled", seen
        assert_counts_add_up(seen)

        # Items running in either process stop; none of them finishes its 120 s.
        def drained() -> dict[str, Any] | None:
            got: dict[str, Any] = a.get(f"/api/batches/{slow_id}").json()
            return got if got["finished_at"] and got["counts"]["running"] == 0 else None

        done = wait_until(drained, timeout_s=30, what="running items to stop")
        assert done["status"] == "cancelled", done
        assert done["counts"]["cancelled"] == N_SLOW, done
        assert b.get(f"/api/batches/{slow_id}").json() == done
        listed = b.get("/api/batches", params={"status": "cancelled"}).json()["data"]
        assert [x["id"] for x in listed] == [slow_id]
        assert {it["status"] for it in all_items(b, slow_id)} == {"cancelled"}
        runs = read_runs(run_log)
        assert not [r for r in runs if r.what == "end"], "a cancelled item ran to its end"
        assert {r.attempt for r in runs} == {1}, "a cancelled item was retried"

        # A finished batch made on A exports the same through B, in every format.
        r = a.post("/api/batches", json={
            "task": "square", "items": [{"n": i} for i in range(N_EXPORT)],
        })
        assert r.status_code == 201, r.text
        done_id = r.json()["id"]
        assert wait_batch(b, done_id, timeout_s=60)["status"] == "completed"
        rows = export_rows(b, done_id)
        assert [row["seq"] for row in rows] == list(range(N_EXPORT))
        assert all(row["output"] == {"n": row["seq"], "square": row["seq"] ** 2} for row in rows)
        for fmt in ("jsonl", "csv", "json"):
            via_a = a.get(f"/api/batches/{done_id}/results", params={"format": fmt})
            via_b = b.get(f"/api/batches/{done_id}/results", params={"format": fmt})
            assert via_a.status_code == via_b.status_code == 200, (via_a.text, via_b.text)
            assert via_b.headers["content-type"] == via_a.headers["content-type"]
            assert via_b.content == via_a.content, f"{fmt} export differs between servers"
            if fmt == "csv":
                assert len(via_b.content.splitlines()) == N_EXPORT + 1  # and a header
        assert len(b.get("/api/batches").json()["data"]) == 2


# ---------------------------------------------------------------------------
# LISTEN/NOTIFY


def test_idle_workers_wake_on_notify(pg_server: Callable[..., Server]) -> None:
    # The API server has no worker of its own to nudge, and the worker polls only
    # every 5 s: only the NOTIFY that commits new items can make it look sooner.
    api = pg_server(run_worker="false")
    start_worker(pg_server, poll_interval_s=5)
    with api.client() as c:
        delays = []
        for probe in range(4):
            r = c.post("/api/batches", json={
                "task": "square", "items": [{"n": i} for i in range(10)],
            })
            assert r.status_code == 201, r.text
            batch = wait_batch(c, r.json()["id"], timeout_s=30)
            assert batch["status"] == "completed", batch
            if probe == 0:
                continue  # the worker may have been between polls as it started
            # Each probe goes in right after the last batch finished. The worker
            # committed that finish, looked for work once more, found none and
            # went idle for a full 5 s poll: a start within 2 s is the NOTIFY.
            first = all_items(c, batch["id"])[0]
            delays.append(epoch(first["started_at"]) - epoch(batch["created_at"]))
    print(f"\nstart after submit: {', '.join(f'{d:.3f} s' for d in delays)}")
    assert max(delays) <= 2.0, delays
