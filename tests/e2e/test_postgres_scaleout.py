"""Scale-out on PostgreSQL: several API servers and workers on one database.

These tests always run on PostgreSQL, whatever BATCHD_TEST_BACKEND says: each
gets a fresh database of its own; without a reachable server they fail.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import (
    Server,
    create_pg_database,
    drop_database,
    scaled,
    wait_batch,
    wait_until,
)
from tests.e2e.test_crash import (
    Db,
    Kill,
    _worker_up,
    all_items,
    assert_completed,
    assert_counts_add_up,
    check_kills,
    export_rows,
    ndjson_body,
    note_kill,
    past,
    square_outputs,
    start_worker,
)
from tests.support.runlog import read_runs

# The kill tests share one xdist worker (--dist loadgroup): run side by side on two
# cores they would only measure each other.
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("crash")]


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


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------
# kill -9 of random workers, again and again


N_ITEMS = 50_000
N_WORKERS = 3
KILLS = 11
# Worker settings. The lease is scaled: a live worker on a busy machine must never
# lose one (it renews every lease/3), as a re-run without a kill fails the test.
LEASE_S = scaled(2.0)
REAP_INTERVAL_S = 0.25
POLL_INTERVAL_S = 0.1
WORKER_SETTINGS = {"lease_s": LEASE_S, "reap_interval_s": REAP_INTERVAL_S,
                   "poll_interval_s": POLL_INTERVAL_S}
# After a kill, an item the killed worker held waits out its lease (at most LEASE_S:
# its last renewal came before the kill), then the next reaper pass and a claim
# (workers are busy, or poll). The allowance is for transaction latency with five
# processes on two cores, scaled for a busy machine.
RECOVERY_BOUND_S = LEASE_S + REAP_INTERVAL_S + POLL_INTERVAL_S + scaled(2.0)


def tcp_ports(pid: int) -> list[int]:
    """The local ports of a process's TCP connections: its database sessions among them."""
    return [c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")]


class WorkerPool:
    """Keeps ``size`` workers running; kills random ones, noting what each kill left."""

    def __init__(
        self, make_server: Callable[..., Server], db: Db, *, size: int, rng: random.Random,
        **settings: Any,
    ) -> None:
        self.make_server = make_server
        self.db = db
        self.settings = settings
        self.rng = rng
        self.live = [start_worker(make_server, **settings) for _ in range(size)]
        self.kills: list[Kill] = []

    def kill_random(self, batch_pk: int, moment: str) -> Kill:
        """SIGKILL a random one of the workers at work; start another in its place.

        Writes are held back meanwhile, so what the database holds is what the kill
        left: the items the killed worker held, exactly. The replacement is not
        waited for: the batch goes on meanwhile.
        """
        up = wait_until(lambda: [w for w in self.live if _worker_up(w)], timeout_s=30,
                        what="a worker at work")
        w = self.rng.choice(up)
        assert w.proc is not None
        pid = w.proc.pid
        live = {p.proc.pid for p in self.live if p is not w and p.proc is not None}
        ports = tcp_ports(pid)
        self.db.freeze()
        try:
            kill = Kill(f"{moment} ({len(up)} at work)", pid)
            w.kill()
            self.db.end_sessions(ports)
            self.db.wait_sessions_gone(ports)
            note_kill(kill, self.db.look(batch_pk), self.kills, live=live)
        finally:
            self.db.thaw()
        self.kills.append(kill)
        self.live.remove(w)
        self.live.append(self.make_server(command="worker", **self.settings))
        return kill

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
    db = Db(api_a.database_url)
    pool = WorkerPool(pg_server, db, size=N_WORKERS, rng=random.Random(seed),
                      **WORKER_SETTINGS)

    # Each kill can orphan an item at most once, so with this many attempts a kill
    # never turns into a failed item. No retry backoff: a lost lease is not the
    # item's fault, and the recovery bound below is then lease + reaper + claim.
    # Parallelism well above one worker's claim (256 items): all three take part,
    # so whichever is killed has items in flight.
    params: dict[str, Any] = {
        "task": "square", "max_attempts": 30, "retry_backoff_s": 0, "parallelism": 1000,
    }
    headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": "pg-scaleout-crash"}
    try:
        with api_a.client() as a:
            r = a.post("/api/batches", params=params, headers=headers,
                       content=ndjson_body(N_ITEMS))
            assert r.status_code == 201, r.text
            batch_id = r.json()["id"]
            assert r.json()["counts"]["total"] == N_ITEMS
        batch_pk = db.pk_of(batch_id)

        for k in range(KILLS):
            threshold = N_ITEMS * (k + 1) // (KILLS + 2)
            b = wait_until(functools.partial(past, api_b, batch_id, threshold), timeout_s=90,
                           what=f"progress past {threshold}")
            assert b["status"] == "closed", f"batch finished before kill {k}: {b['counts']}"
            pool.kill_random(batch_pk, f"after {b['counts']['succeeded']} succeeded")
    finally:
        db.close()

    pool.wait_all_up()
    with api_b.client() as c:
        assert_completed(c, batch_id, N_ITEMS)
        attempts = {it["id"]: it["attempts"] for it in all_items(c, batch_id)}
        outputs = square_outputs(export_rows(c, batch_id), attempts)
        assert [x["id"] for x in c.get("/api/batches").json()["data"]] == [batch_id]

        # The Idempotency-Key given to A holds on B too: the same upload is a replay.
        r = c.post("/api/batches", params=params, headers=headers, content=ndjson_body(N_ITEMS))
        assert r.status_code == 201, r.text
        assert r.headers.get("Idempotent-Replayed") == "true"
        assert r.json()["id"] == batch_id
        assert [x["id"] for x in c.get("/api/batches").json()["data"]] == [batch_id]

    # Recorded outcomes unchanged, attempts and re-runs all explained by the kills.
    by_item = check_kills(pool.kills, attempts, outputs, run_log)

    # Each item a killed worker held ran again soon after its lease ran out.
    runs = {(r.item_id, r.attempt): r for rs in by_item.values() for r in rs}
    delays: list[float] = []
    slow: list[tuple[str, float]] = []
    lost_unrun = 0  # the next claim was lost to a kill too, before it ran
    for kill in pool.kills:
        for item_id, attempt in kill.held.items():
            nxt = runs.get((item_id, attempt + 1))
            if nxt is None:
                lost_unrun += 1
                continue
            delays.append(nxt.at - kill.at)
            if nxt.at - kill.at > RECOVERY_BOUND_S:
                slow.append((item_id, round(nxt.at - kill.at, 3)))

    rerun = sum(1 for rs in by_item.values() if len(rs) > 1)
    print(f"kills: {'; '.join(f'{k.moment}: held {len(k.held)}' for k in pool.kills)}")
    print(f"items run more than once: {rerun} of {N_ITEMS} "
          f"(next claims lost before they ran: {lost_unrun}; "
          f"max runs of one item: {max(len(rs) for rs in by_item.values())}, "
          f"max attempts: {max(attempts.values())})")
    if delays:
        print(f"re-run after a kill ({len(delays)}): max {max(delays):.3f} s, "
              f"median {sorted(delays)[len(delays) // 2]:.3f} s "
              f"(lease {LEASE_S:g} s, bound {RECOVERY_BOUND_S:g} s)")
    assert not slow, (
        f"{len(slow)} items held by a killed worker ran again later than "
        f"{RECOVERY_BOUND_S:g} s after the kill: {slow[:5]}"
    )
    assert len(pool.kills) == KILLS
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
        assert all(row["output"] == {"n": row["seq"], "square": row["seq"] ** 2, "attempt": 1}
                   for row in rows)
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


# A start within NOTIFY_BOUND_S (scaled for a busy machine) of a submit can only be
# the NOTIFY's doing when the worker otherwise looks for work only every
# NOTIFY_POLL_S, ten times as long.
NOTIFY_BOUND_S = scaled(3.0)
NOTIFY_POLL_S = 10 * NOTIFY_BOUND_S


def test_idle_workers_wake_on_notify(pg_server: Callable[..., Server]) -> None:
    # The API server has no worker of its own to nudge, and the worker polls only
    # every NOTIFY_POLL_S: only the NOTIFY that commits new items can make it look sooner.
    api = pg_server(run_worker="false")
    start_worker(pg_server, poll_interval_s=NOTIFY_POLL_S)
    with api.client() as c:
        delays = []
        for probe in range(4):
            r = c.post("/api/batches", json={
                "task": "square", "items": [{"n": i} for i in range(10)],
            })
            assert r.status_code == 201, r.text
            batch = wait_batch(c, r.json()["id"], timeout_s=NOTIFY_POLL_S + 30)
            assert batch["status"] == "completed", batch
            if probe == 0:
                continue  # the worker may have been between polls as it started
            # Each probe goes in right after the last batch finished. The worker
            # committed that finish, looked for work once more, found none and
            # went idle for a full poll: a start within the bound is the NOTIFY.
            first = all_items(c, batch["id"])[0]
            delays.append(epoch(first["started_at"]) - epoch(batch["created_at"]))
    print(f"\nstart after submit: {', '.join(f'{d:.3f} s' for d in delays)} "
          f"(bound {NOTIFY_BOUND_S:g} s, poll {NOTIFY_POLL_S:g} s)")
    assert max(delays) <= NOTIFY_BOUND_S, delays
