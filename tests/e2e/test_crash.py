"""Crash safety and several processes on one database, with real subprocesses.

At-least-once execution, exactly-once recorded outcome: ``kill -9`` at any moment
loses no accepted input and no recorded result, and an item runs again only when
the killed process held it at the kill.

The kill test looks into the database itself for what no API shows (staged
uploads, which process holds which item), and holds its write lock for an
instant, writing nothing, so that a kill lands exactly where it is aimed.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchd.domain.models import item_public_id
from batchd.store.sqlite.connection import sqlite_path
from tests.conftest import Server, scaled, wait_batch, wait_until
from tests.support.paging import all_items
from tests.support.runlog import Run, read_runs, runs_by_item

# The kill tests share one xdist worker (--dist loadgroup): run side by side on two
# cores they would only measure each other.
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("crash")]

N_CRASH = 20_000
UPLOAD_CHUNK = 1000
INGEST_FLUSH = 2000  # the server's ingest_flush_items: the items staged per write


def start_worker(make_server: Callable[..., Server], **settings: Any) -> Server:
    """A ``batchd worker`` process, returned once it has started its loop."""
    w = make_server(command="worker", **settings)
    wait_until(lambda: _worker_up(w), timeout_s=30, what="worker start")
    return w


def _worker_up(w: Server) -> bool:
    assert w.proc is not None
    if w.proc.poll() is not None:
        raise AssertionError(f"worker exited: {w.log_path.read_text()[-3000:]}")
    return w.log_path.exists() and "running" in w.log_path.read_text()


def export_rows(c: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    r = c.get(f"/api/batches/{batch_id}/results", params={"format": "jsonl"})
    assert r.status_code == 200, r.text
    return [orjson.loads(line) for line in r.content.splitlines() if line.strip()]


def ndjson_body(n: int, *, after_chunk: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """``{"n": i}`` lines in chunks; ``after_chunk(k)`` runs once chunk k is handed over."""
    for k, start in enumerate(range(0, n, UPLOAD_CHUNK)):
        stop = min(n, start + UPLOAD_CHUNK)
        yield b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(start, stop))
        if after_chunk is not None:
            after_chunk(k)


# ---------------------------------------------------------------------------
# the database, seen from outside


@dataclass(frozen=True)
class Upload:
    """A batch row as the database has it, committed or still staging."""

    pk: int
    id: str
    staging: bool
    total: int  # its counter: 0 until the upload commits
    rows: int  # item rows written for it, staged or committed


@dataclass
class Look:
    """One batch's state in the database at one instant."""

    counts: dict[str, int]
    # item id → (status, attempts, lease owner, output)
    items: dict[str, tuple[str, int, str | None, Any]]
    pids: dict[str, int]  # worker id → its process

    def owners_of(self, pid: int) -> set[str]:
        return {owner for owner, p in self.pids.items() if p == pid}


class Db:
    """The server's database (SQLite or PostgreSQL), from outside.

    Reads go through a read-only connection. ``freeze()`` takes the write lock on
    another connection and writes nothing: until ``thaw()`` no write of the server
    can commit, so what is read meanwhile is what a kill made meanwhile leaves.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith("postgresql")
        self._mutex = threading.Lock()  # the upload thread reads too
        self._lock: Any = None
        self._conn: Any
        if self.pg:
            import psycopg

            self._conn = psycopg.connect(url, autocommit=True)
            self._conn.execute("SET default_transaction_read_only = on")
        else:
            self._path = sqlite_path(url)
            self._conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True,
                                         isolation_level=None, check_same_thread=False)

    def close(self) -> None:
        self.thaw()
        self._conn.close()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.pg:
            sql = sql.replace("?", "%s")
        with self._mutex:
            return [tuple(r) for r in self._conn.execute(sql, args).fetchall()]

    # holding writes back
    @property
    def frozen(self) -> bool:
        return self._lock is not None

    def freeze(self) -> None:
        assert self._lock is None
        lock: Any
        if self.pg:
            import psycopg

            lock = psycopg.connect(self.url)
            lock.execute("SET lock_timeout = '60s'")
            # Every write that matters (staging, committing, claiming, finishing)
            # moves a batch's counters in its transaction: it waits here.
            lock.execute("LOCK TABLE batches IN SHARE MODE")
        else:
            lock = sqlite3.connect(self._path, isolation_level=None, timeout=60,
                                   check_same_thread=False)
            lock.execute("BEGIN IMMEDIATE")
        self._lock = lock

    def thaw(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.rollback()
            lock.close()

    def freeze_when(self, ready: Callable[[], Any], *, timeout_s: float, what: str) -> None:
        """Poll ``ready``; freeze once it holds, and still holds with writes held back."""

        def frozen_ready() -> bool:
            if not ready():
                return False
            self.freeze()
            if ready():
                return True
            self.thaw()
            return False

        wait_until(frozen_ready, timeout_s=timeout_s, interval_s=0.01, what=what)

    # sessions of killed processes
    def _sessions(self, ports: list[int] | None) -> str:
        """The other sessions on this database: all, or those from these client ports."""
        return ("FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                + (f" AND pid <> {self._lock.info.backend_pid}" if self._lock else "")
                + (f" AND client_port IN ({','.join(map(str, ports or [0]))})"
                   if ports is not None else ""))

    def end_sessions(self, ports: list[int] | None = None) -> None:
        """PostgreSQL: end a killed process's sessions (those from ``ports``, or all
        others), so that nothing it left waiting on the lock can commit later."""
        if self.pg:
            self.rows(f"SELECT pg_terminate_backend(pid) {self._sessions(ports)}")

    def wait_sessions_gone(self, ports: list[int] | None = None) -> None:
        """PostgreSQL: wait until a killed process's sessions are gone; a statement
        it sent just before the kill may still commit until then."""
        if self.pg:
            wait_until(lambda: self.rows(f"SELECT COUNT(*) {self._sessions(ports)}")[0][0] == 0,
                       timeout_s=30, what="the killed process's sessions to end")

    # what is there
    def uploads_after(self, pk: int, *, rows: bool = True) -> list[Upload]:
        count = "(SELECT COUNT(*) FROM items i WHERE i.batch_pk = b.pk)" if rows else "0"
        if rows and self.pg:  # PostgreSQL stages uploads in a table of their own
            count += " + (SELECT COUNT(*) FROM item_stage s WHERE s.batch_pk = b.pk)"
        return [
            Upload(pk=r[0], id=r[1], staging=bool(r[2]), total=r[3], rows=r[4])
            for r in self.rows(
                f"SELECT b.pk, b.id, b.staging, b.n_total, {count} FROM batches b "
                "WHERE b.pk > ? ORDER BY b.pk", pk)
        ]

    def pk_of(self, batch_id: str) -> int:
        return int(self.rows("SELECT pk FROM batches WHERE id = ?", batch_id)[0][0])

    def last_pk(self) -> int:
        return int(self.rows("SELECT COALESCE(MAX(pk), 0) FROM batches")[0][0])

    def progress(self, batch_pk: int) -> tuple[int, str]:
        n, status = self.rows("SELECT n_succeeded, status FROM batches WHERE pk = ?", batch_pk)[0]
        return int(n), str(status)

    def worker_pids(self) -> dict[str, int]:
        return {owner: orjson.loads(bytes(info))["pid"]
                for owner, info in self.rows("SELECT id, info FROM workers")}

    def claims_of(self, batch_pk: int, pid: int) -> int:
        """Items of the batch leased to the process ``pid`` (committed claims)."""
        owners = [o for o, p in self.worker_pids().items() if p == pid]
        if not owners:
            return 0
        return int(self.rows(
            "SELECT COUNT(*) FROM items WHERE batch_pk = ? AND status = 'running' "
            f"AND lease_owner IN ({','.join('?' * len(owners))})", batch_pk, *owners)[0][0])

    def look(self, batch_pk: int) -> Look:
        [row] = self.rows("SELECT n_total, n_queued, n_running, n_succeeded, n_failed, "
                          "n_cancelled FROM batches WHERE pk = ?", batch_pk)
        counts = dict(zip(("total", "queued", "running", "succeeded", "failed", "cancelled"),
                          (int(x) for x in row), strict=True))
        items = {
            item_public_id(i): (status, attempts, owner,
                                orjson.loads(bytes(out)) if out is not None else None)
            for i, status, attempts, owner, out in self.rows(
                "SELECT i.id, i.status, i.attempts, i.lease_owner, o.data FROM items i "
                "LEFT JOIN item_outputs o ON o.id = i.id WHERE i.batch_pk = ?", batch_pk)
        }
        return Look(counts=counts, items=items, pids=self.worker_pids())


# ---------------------------------------------------------------------------
# kill -9 of the server, again and again


@dataclass
class Kill:
    """What one kill left in the database."""

    moment: str
    pid: int
    at: float = field(default_factory=time.time)  # taken before the signal
    # the items the killed process held (claimed, no outcome recorded): their attempt
    held: dict[str, int] = field(default_factory=dict)
    # every outcome recorded by then: (attempt, output)
    recorded: dict[str, tuple[int, Any]] = field(default_factory=dict)


def note_kill(kill: Kill, look: Look, earlier: list[Kill], *, live: Collection[int] = ()) -> None:
    """Fill ``kill`` in from the database as the kill left it.

    Every item running then is held by the process killed, or is an orphan of an
    earlier kill whose lease has not run out yet, or belongs to a ``live`` process.
    """
    n = Counter(status for status, *_ in look.items.values())
    assert look.counts == {"total": len(look.items), **{
        s: n[s] for s in ("queued", "running", "succeeded", "failed", "cancelled")}}, (
        f"counters do not match the items at the kill {kill.moment}: {look.counts}, {n}")
    owners = look.owners_of(kill.pid)
    orphans = {(i, a) for k in earlier for i, a in k.held.items()}
    for item_id, (status, attempts, owner, output) in look.items.items():
        if status == "running":
            if owner in owners:
                kill.held[item_id] = attempts
            elif look.pids.get(owner or "") not in live:
                assert (item_id, attempts) in orphans, (
                    f"{item_id} (attempt {attempts}) was leased to {owner}, which no kill "
                    f"stopped and is not running, at the kill {kill.moment}")
        elif status == "succeeded":
            kill.recorded[item_id] = (attempts, output)
        else:
            assert status == "queued", (item_id, status, kill.moment)


def check_kills(
    kills: list[Kill], attempts: dict[str, int], outputs: dict[str, Any], run_log: Path
) -> dict[str, list[Run]]:
    """The final state against what each kill left; the runs of each item, by attempt.

    - every outcome recorded at a kill is still there: same attempt, same output;
    - an item used one attempt more than the claims kills took from it: every
      attempt but its last was held at a kill by the process killed;
    - the run log: every item ran, its recorded attempt ran, and any other run was
      of a claim held at a kill, in the process killed.
    """
    for kill in kills:
        changed = {i: (was, (attempts[i], outputs[i])) for i, was in kill.recorded.items()
                   if was != (attempts[i], outputs[i])}
        assert not changed, (f"{len(changed)} outcomes recorded by the kill {kill.moment} "
                             f"changed later: {list(changed.items())[:3]}")

    held: dict[tuple[str, int], Kill] = {}
    for kill in kills:
        for item_id, attempt in kill.held.items():
            assert (item_id, attempt) not in held, (item_id, attempt, kill.moment)
            held[item_id, attempt] = kill
    for item_id, n in attempts.items():
        lost = [a for a in range(1, n) if (item_id, a) not in held]
        assert not lost, f"{item_id} used attempts {lost} (of {n}) that no kill took from it"
    for (item_id, attempt), kill in held.items():
        assert attempts[item_id] > attempt, (
            f"{item_id} was held at attempt {attempt} by the process killed {kill.moment}, "
            f"yet its recorded outcome is that attempt's")

    by_item = runs_by_item(read_runs(run_log), "run")
    assert set(by_item) == set(attempts), "an item never ran, or something else did"
    for item_id, rs in by_item.items():
        rs.sort(key=lambda r: r.attempt)
        tries = [r.attempt for r in rs]
        assert len(set(tries)) == len(tries), f"{item_id} ran twice in one attempt: {rs}"
        assert tries[-1] == attempts[item_id], (item_id, rs, attempts[item_id])
        for r in rs[:-1]:
            holder = held.get((item_id, r.attempt))
            assert holder is not None and holder.pid == r.pid, (
                f"{item_id} ran again, but its attempt {r.attempt} (pid {r.pid}) was "
                f"not held at any kill by the process killed: {rs}")
    return by_item


def square_outputs(rows: list[dict[str, Any]], attempts: dict[str, int]) -> dict[str, Any]:
    """Each export row of a ``square`` batch is its input's, made by the recorded attempt."""
    assert len(rows) == len(attempts)
    assert sorted(row["seq"] for row in rows) == list(range(len(attempts))), (
        "lost or duplicated rows")
    assert {row["item_id"] for row in rows} == set(attempts)
    outputs = {}
    for row in rows:
        assert row["status"] == "succeeded", row
        n = row["input"]["n"]
        assert n == row["seq"], row
        assert row["output"] == {"n": n, "square": n * n, "attempt": attempts[row["item_id"]]}, (
            "the output is not the recorded attempt's", row, attempts[row["item_id"]])
        outputs[row["item_id"]] = row["output"]
    return outputs


class Crasher:
    """Kills and restarts one server; after each kill, notes what the database holds."""

    def __init__(self, srv: Server, db: Db) -> None:
        self.srv = srv
        self.db = db
        self.batch_pk: int | None = None
        self.kills: list[Kill] = []

    @property
    def pid(self) -> int:
        assert self.srv.proc is not None
        return self.srv.proc.pid

    def kill(self, moment: str) -> Kill:
        """SIGKILL; if the database is frozen, end the dead server's sessions, then thaw."""
        kill = Kill(moment, self.pid)
        self.srv.kill()
        if self.db.frozen:
            self.db.end_sessions()
            self.db.thaw()
        self.db.wait_sessions_gone()
        if self.batch_pk is not None:
            note_kill(kill, self.db.look(self.batch_pk), self.kills)
        self.kills.append(kill)
        return kill

    def kill_holding_claims(self, moment: str) -> Kill:
        """Kill the server the moment it holds claims on items of the batch."""
        assert self.batch_pk is not None
        pk, pid = self.batch_pk, self.pid
        self.db.freeze_when(lambda: self.db.claims_of(pk, pid), timeout_s=30,
                            what=f"the server to hold claims ({moment})")
        kill = self.kill(moment)
        assert kill.held, f"killed {moment} holding no item: the kill missed its aim"
        return kill


def start_upload(
    srv: Server, *, params: dict[str, Any], headers: dict[str, str],
    after_chunk: Callable[[int], None] | None = None,
) -> tuple[threading.Thread, dict[str, Any]]:
    """POST the whole batch from a thread; ``outcome`` gets its answer or exception.

    A request cut off by a kill gets no answer: ``outcome["response"]`` stays unset.
    """
    outcome: dict[str, Any] = {}

    def post() -> None:
        try:
            with srv.client() as c:
                outcome["response"] = c.post(
                    "/api/batches", params=params, headers=headers,
                    content=ndjson_body(N_CRASH, after_chunk=after_chunk),
                )
        except httpx.TransportError:
            pass
        except BaseException as exc:  # e.g. an assertion in after_chunk
            outcome["error"] = exc

    t = threading.Thread(target=post)
    t.start()
    return t, outcome


def joined(t: threading.Thread, outcome: dict[str, Any]) -> httpx.Response | None:
    t.join(scaled(60))
    assert not t.is_alive(), "the upload never ended"
    if "error" in outcome:
        raise outcome["error"]
    response: httpx.Response | None = outcome.get("response")
    return response


def submit_crashing(crasher: Crasher, *, key: str, params: dict[str, Any]) -> dict[str, Any]:
    """Upload the batch as NDJSON while the server is killed at three moments.

    A request that got no 201 was not accepted as far as the client knows, so it
    is sent again with the same Idempotency-Key until it gets one; the server
    must end up with exactly one batch whatever moment the kills hit.
    """
    srv, db = crasher.srv, crasher.db
    headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": key}
    last_chunk = N_CRASH // UPLOAD_CHUNK - 1

    def listed() -> list[str]:
        with srv.client() as c:
            return [b["id"] for b in c.get("/api/batches").json()["data"]]

    def staged_since(pk: int) -> Callable[[], bool]:
        """Whether the upload begun after batch ``pk`` has written items (staged or not)."""
        def staged() -> bool:
            ups = db.uploads_after(pk)
            return bool(ups) and ups[-1].rows >= INGEST_FLUSH
        return staged

    # 1. Killed while the body streams in, once part of it is staged.
    since = db.last_pk()
    midway = last_chunk // 2

    def kill_midway(k: int) -> None:
        if k == midway:
            wait_until(staged_since(since), timeout_s=30, what="part of the upload to be staged")
            crasher.kill("during the upload")

    with srv.client() as c, pytest.raises(httpx.TransportError):
        c.post("/api/batches", params=params, headers=headers,
               content=ndjson_body(N_CRASH, after_chunk=kill_midway))
    [up] = db.uploads_after(since)
    assert up.staging, f"killed during the upload, yet it committed: {up}"
    assert INGEST_FLUSH <= up.rows <= (midway + 1) * UPLOAD_CHUNK, up
    srv.start()
    assert listed() == [], "an upload cut off midway became a batch"

    # 2. Killed once the whole body is handed over, while the server still ingests
    # it: writes are held back before the last chunk goes, so it cannot commit.
    since = db.last_pk()
    sent = threading.Event()

    def hold_before_the_end(k: int) -> None:
        if k == last_chunk - 1:
            db.freeze_when(staged_since(since), timeout_s=30,
                           what="part of the upload to be staged")
        elif k == last_chunk:
            sent.set()

    t, outcome = start_upload(srv, params=params, headers=headers,
                              after_chunk=hold_before_the_end)
    wait_until(lambda: sent.is_set() or not t.is_alive(), timeout_s=60,
               what="the whole body to be handed over")
    if not sent.is_set():
        raise AssertionError(f"the upload ended early: {joined(t, outcome)}")
    [up] = db.uploads_after(since)
    assert up.staging, f"the whole body was handed over and the upload committed: {up}"
    assert up.rows >= INGEST_FLUSH, up
    crasher.kill("while ingesting")
    assert joined(t, outcome) is None, "answered though killed before it committed"
    [after] = db.uploads_after(since)
    assert after == up, f"the upload moved after the kill: {up} → {after}"
    srv.start()
    assert listed() == [], "an upload killed before it committed became a batch"

    # 3. Killed the moment the batch is committed: the 201 may not have gone out.
    since = db.last_pk()
    t, outcome = start_upload(srv, params=params, headers=headers)
    [up] = wait_until(lambda: [u for u in db.uploads_after(since, rows=False) if not u.staging],
                      timeout_s=60, interval_s=0.005, what="the batch to be committed")
    crasher.batch_pk = up.pk
    crasher.kill("as the batch appears")
    answer = joined(t, outcome)
    [up] = db.uploads_after(since)
    assert not up.staging and up.total == up.rows == N_CRASH, up
    if answer is not None:
        assert answer.status_code == 201, answer.text
        assert answer.json()["id"] == up.id
    srv.start()
    assert listed() == [up.id]
    print(f"\nkilled as the batch appeared: the client got "
          f"{answer.status_code if answer is not None else 'no answer'}")

    # The retry that gets through: a replay of the accepted batch.
    with srv.client() as c:
        r = c.post("/api/batches", params=params, headers=headers, content=ndjson_body(N_CRASH))
        assert r.status_code == 201, r.text
        assert r.headers.get("Idempotent-Replayed") == "true"
        batch: dict[str, Any] = r.json()
        assert batch["id"] == up.id
        assert batch["counts"]["total"] == N_CRASH
    assert listed() == [up.id], "a duplicate batch was created"
    return batch


def past(srv: Server, batch_id: str, succeeded: int) -> dict[str, Any] | None:
    """The batch once ``succeeded`` items are recorded (or it has finished)."""
    with srv.client() as c:
        r = c.get(f"/api/batches/{batch_id}")
    assert r.status_code == 200, r.text
    b: dict[str, Any] = r.json()
    assert_counts_add_up(b)
    return b if b["counts"]["succeeded"] >= succeeded or b["status"] != "closed" else None


def assert_counts_add_up(b: dict[str, Any]) -> None:
    """Counters move in the same transaction as the items: they always add up."""
    n = b["counts"]
    parts = n["queued"] + n["running"] + n["succeeded"] + n["failed"] + n["cancelled"]
    assert parts == n["total"], f"counters do not add up: {n}"
    assert min(n.values()) >= 0, f"a counter went negative: {n}"


def assert_completed(c: httpx.Client, batch_id: str, n: int) -> None:
    """The batch ends completed with every one of its ``n`` single-record items."""
    b = wait_batch(c, batch_id, timeout_s=120)
    assert b["status"] == "completed", b
    assert b["counts"] == {"total": n, "queued": 0, "running": 0,
                           "succeeded": n, "failed": 0, "cancelled": 0}
    assert b["records"] == {"total": n, "succeeded": n, "failed": 0,
                            "cancelled": 0}


# The server's lease: an item a killed server held runs again once it has run out.
# Scaled, so that a live server on a busy machine never loses one (it renews every
# lease/3): a lease lost without a kill would be a re-run this test refuses.
CRASH_LEASE_S = scaled(1.5)
KILL_AFTER = (1500, 4500, 7500, 10500, 13500, 16500)


def test_crash_sigkill_loses_and_duplicates_nothing(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    srv = make_server(lease_s=CRASH_LEASE_S, ingest_flush_items=INGEST_FLUSH)
    db = Db(srv.database_url)
    crasher = Crasher(srv, db)
    try:
        # Each kill can orphan an item at most once, so with this many attempts a
        # kill never turns into a failed item; failures would show as lost rows.
        # At most 8 running: the server then holds items in reserve too (a kill leaves
        # them leased but queued), and runs slowly enough for each kill to find the
        # batch unfinished (with no cap it ran thousands of items between two looks).
        params = {"task": "square", "max_attempts": 30, "parallelism": 8}
        batch = submit_crashing(crasher, key="crash-test-upload", params=params)
        batch_id = batch["id"]
        batch_pk = crasher.batch_pk
        assert batch_pk is not None

        def past_threshold(threshold: int) -> tuple[int, str] | None:
            n, status = db.progress(batch_pk)
            return (n, status) if n >= threshold or status != "closed" else None

        for i, threshold in enumerate(KILL_AFTER):
            n, status = wait_until(functools.partial(past_threshold, threshold), timeout_s=90,
                                   what=f"progress past {threshold}")
            assert status == "closed", f"batch finished before kill {i}: {n} succeeded"
            crasher.kill_holding_claims(f"after {n} succeeded")
            srv.start()
            if i == 2:
                # And once while it starts up: as soon as it holds claims, when its
                # reaper may not yet have returned the last kill's orphans.
                crasher.kill_holding_claims("right after a restart")
                srv.start()

        with srv.client() as c:
            assert_completed(c, batch_id, N_CRASH)
            attempts = {it["id"]: it["attempts"] for it in all_items(c, batch_id)}
            rows = export_rows(c, batch_id)
            listed = c.get("/api/batches").json()["data"]
        assert [x["id"] for x in listed] == [batch_id]
    finally:
        db.close()

    # The export: every input once, each with the output of the attempt recorded;
    # and the recorded outcomes, attempts and runs, against what each kill left.
    outputs = square_outputs(rows, attempts)
    by_item = check_kills(crasher.kills, attempts, outputs, run_log)

    rerun = sum(1 for rs in by_item.values() if len(rs) > 1)
    print(f"kills: {len(crasher.kills)}")
    for kill in crasher.kills:
        print(f"  {kill.moment}: held {len(kill.held)}, recorded {len(kill.recorded)}")
    print(f"items run more than once: {rerun} of {N_CRASH}; claims lost before they ran: "
          f"{sum(n - len(by_item[i]) for i, n in attempts.items())}; "
          f"max attempts: {max(attempts.values())}")
    assert len(crasher.kills) == 3 + len(KILL_AFTER) + 1
    assert rerun > 0, "no kill interrupted a run: the test exercised nothing"


# ---------------------------------------------------------------------------
# a server and two workers on one SQLite file


N_SQUARE = 5000
N_TRACKED = 1500
# Each process keeps at most this many async items in flight, below a batch's
# parallelism (64), so no one process can take a whole tracked batch.
IN_FLIGHT = 16


def test_two_workers_and_a_server_share_one_sqlite_file(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    srv = make_server(worker_concurrency=IN_FLIGHT)
    workers = [start_worker(make_server, worker_concurrency=IN_FLIGHT) for _ in range(2)]
    procs = [srv, *workers]
    statuses: list[tuple[str, int]] = []

    def call(c: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
        r = c.request(method, path, **kw)
        statuses.append((f"{method} {path}", r.status_code))
        return r

    with srv.client() as c:
        sizes: dict[str, int] = {}
        for task, items in (
            ("square", [{"n": i} for i in range(N_SQUARE)]),
            ("tracked", [{"n": i, "seconds": 0.02} for i in range(N_TRACKED)]),
        ):
            r = call(c, "POST", "/api/batches", json={"task": task, "items": items})
            assert r.status_code == 201, r.text
            sizes[r.json()["id"]] = len(items)

        polls = exports = 0
        cursors: dict[str, str | None] = dict.fromkeys(sizes)
        running = set(sizes)
        while running:
            polls += 1
            assert polls < 20_000, f"batches never finished: {running}"
            call(c, "GET", "/api/batches")
            for batch_id in sorted(running):
                b = call(c, "GET", f"/api/batches/{batch_id}").json()
                assert_counts_add_up(b)
                cursor = cursors[batch_id]
                page = call(c, "GET", f"/api/batches/{batch_id}/items",
                            params={"limit": 200, **({"cursor": cursor} if cursor else {})}).json()
                cursors[batch_id] = page["next_cursor"]
                if page["data"]:
                    call(c, "GET", f"/api/batches/{batch_id}/items/{page['data'][-1]['id']}")
                if polls % 3 == 0:
                    r = call(c, "GET", f"/api/batches/{batch_id}/results")
                    seqs = [orjson.loads(line)["seq"] for line in r.content.splitlines()]
                    assert seqs == sorted(set(seqs)), "export while running repeated rows"
                    exports += 1
                if b["status"] not in ("open", "closed"):
                    running.discard(batch_id)
                    assert b["status"] == "completed", b
                    assert b["counts"]["succeeded"] == sizes[batch_id], b

        for batch_id, n in sizes.items():
            rows = export_rows(c, batch_id)
            assert sorted(row["seq"] for row in rows) == list(range(n))
            assert all(row["output"]["n"] == row["input"]["n"] for row in rows)

    bad = [s for s in statuses if not 200 <= s[1] < 300]
    assert not bad, f"non-2xx responses during the run: {bad[:10]}"

    # No lease expires here (30 s leases, live heartbeats): each item ran once.
    runs = read_runs(run_log)
    per_pid: dict[int, int] = defaultdict(int)
    for what, n in (("run", N_SQUARE), ("start", N_TRACKED), ("end", N_TRACKED)):
        by_item = runs_by_item(runs, what)
        assert len(by_item) == n, what
        twice = {i: rs for i, rs in by_item.items() if len(rs) > 1}
        assert not twice, f"{len(twice)} items ran more than once: {list(twice.items())[:3]}"
        assert {r.attempt for rs in by_item.values() for r in rs} == {1}
        if what != "end":
            for rs in by_item.values():
                per_pid[rs[0].pid] += 1
    pids = {p.proc.pid for p in procs if p.proc is not None}
    print(f"\n{polls} polls, {exports} exports, {len(statuses)} requests; "
          f"items per process: {dict(per_pid)}")
    assert set(per_pid) == pids, f"not every process ran items: {dict(per_pid)} vs {pids}"

    for p in procs:
        text = p.log_path.read_text()
        assert "database is locked" not in text, f"{p.log_path.name}: {text[-2000:]}"
        assert "database is busy" not in text, f"{p.log_path.name}: {text[-2000:]}"
        assert "Traceback" not in text, f"{p.log_path.name}: {text[-2000:]}"


# ---------------------------------------------------------------------------
# a worker dies holding an item


def test_item_of_a_killed_worker_runs_again_elsewhere(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    srv = make_server(run_worker="false")
    first = start_worker(make_server, lease_s=2)
    with srv.client() as c:
        r = c.post("/api/batches", json={"task": "tracked", "items": [{"n": 7, "seconds": 1.5}]})
        assert r.status_code == 201, r.text
        batch_id = r.json()["id"]
        assert first.proc is not None
        first_pid = first.proc.pid
        started = wait_until(lambda: runs_by_item(read_runs(run_log), "start"), timeout_s=30,
                             what="the item to start")
        [(item_id, [run])] = started.items()
        assert run.pid == first_pid and run.attempt == 1

        first.kill()
        item = c.get(f"/api/batches/{batch_id}/items/{item_id}").json()
        assert item["status"] == "running" and item["attempts"] == 1

        second = start_worker(make_server, lease_s=2)
        b = wait_batch(c, batch_id, timeout_s=60)
        assert b["status"] == "completed", b
        item = c.get(f"/api/batches/{batch_id}/items/{item_id}").json()
        assert item["attempts"] == 2
        assert item["output"] == {"n": 7, "attempt": 2}

    runs = read_runs(run_log)
    assert second.proc is not None
    assert [(r.pid, r.attempt, r.what) for r in runs] == [
        (first_pid, 1, "start"), (second.proc.pid, 2, "start"), (second.proc.pid, 2, "end"),
    ]


# ---------------------------------------------------------------------------
# a worker must not stop while it holds leases: nothing could reap its items


def test_output_that_cannot_be_stored_fails_its_item_and_the_worker_goes_on(
    server: Server,
) -> None:
    with server.client() as c:
        # 2**40 squared does not fit the 64-bit integers JSON outputs are stored with.
        r = c.post("/api/batches", json={"task": "square", "items": [{"n": 2**40}, {"n": 3}]})
        assert r.status_code == 201, r.text
        b = wait_batch(c, r.json()["id"], timeout_s=30)
        assert b["status"] == "partial", b
        assert b["counts"]["succeeded"] == 1 and b["counts"]["failed"] == 1, b
        rows = {row["seq"]: row for row in export_rows(c, b["id"])}
        assert rows[0]["status"] == "failed" and rows[0]["error"]["code"] == "invalid_output"
        assert rows[1]["output"] == {"n": 3, "square": 9, "attempt": 1}

        r = c.post("/api/batches", json={"task": "square", "items": [{"n": i} for i in range(50)]})
        assert r.status_code == 201, r.text
        assert wait_batch(c, r.json()["id"], timeout_s=30)["status"] == "completed"
