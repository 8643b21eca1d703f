"""Crash safety and several processes on one SQLite file, with real subprocesses.

At-least-once execution, exactly-once recorded outcome: ``kill -9`` at any moment
loses no accepted input and no recorded result, and a re-run happens only when a
lease was lost to a killed process.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Server, wait_batch, wait_until

pytestmark = pytest.mark.timeout(240)

N_CRASH = 20_000
UPLOAD_CHUNK = 1000


@dataclass(frozen=True)
class Run:
    item_id: str
    attempt: int
    pid: int
    what: str


def read_runs(run_log: Path) -> list[Run]:
    if not run_log.exists():
        return []
    runs = []
    for line in run_log.read_text().splitlines():
        item_id, attempt, pid, what, _ = line.split()
        runs.append(Run(item_id, int(attempt), int(pid), what))
    return runs


def runs_by_item(runs: list[Run], what: str) -> dict[str, list[Run]]:
    by_item: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.what == what:
            by_item[r.item_id].append(r)
    return by_item


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
# kill -9 of the server, again and again


class Crasher:
    """Kills and restarts one server, remembering the pid of every killed process."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.killed_pids: set[int] = set()
        self.moments: list[str] = []

    def kill(self, moment: str) -> None:
        assert self.srv.proc is not None
        self.killed_pids.add(self.srv.proc.pid)
        self.srv.kill()
        self.moments.append(moment)

    def restart(self, moment: str) -> None:
        self.kill(moment)
        self.srv.start()


def post_killed(
    crasher: Crasher, moment: str, *, params: dict[str, Any], headers: dict[str, str]
) -> httpx.Response | None:
    """Upload the whole batch, then kill the server at ``moment``; the answer, if any came."""
    srv = crasher.srv
    sent = threading.Event()
    outcome: dict[str, httpx.Response] = {}

    def mark_sent(k: int) -> None:
        if k == N_CRASH // UPLOAD_CHUNK - 1:
            sent.set()

    def post() -> None:
        body = ndjson_body(N_CRASH, after_chunk=mark_sent)
        try:
            with srv.client() as c:
                outcome["response"] = c.post(
                    "/api/batches", params=params, headers=headers, content=body
                )
        except httpx.TransportError:
            pass

    t = threading.Thread(target=post)
    t.start()
    assert sent.wait(60), "upload did not finish"
    if moment == "while ingesting":
        time.sleep(0.05)
    else:
        with srv.client() as probe:
            wait_until(lambda: probe.get("/api/batches").json()["data"], timeout_s=60,
                       interval_s=0.002, what="the batch to be committed")
    crasher.restart(moment)
    t.join(60)
    return outcome.get("response")


def submit_crashing(crasher: Crasher, *, key: str, params: dict[str, Any]) -> dict[str, Any]:
    """Upload the batch as NDJSON while the server is killed at several moments.

    A request that got no 201 was not accepted as far as the client knows, so it
    is sent again with the same Idempotency-Key until it gets one; the server
    must end up with exactly one batch whatever moment the kills hit.
    """
    srv = crasher.srv
    headers = {"Content-Type": "application/x-ndjson", "Idempotency-Key": key}
    last_chunk = N_CRASH // UPLOAD_CHUNK - 1

    # Killed while the body streams in: part of it is already written to disk.
    def kill_midway(k: int) -> None:
        if k == last_chunk // 2:
            time.sleep(0.3)  # lets the server stage what it has received
            crasher.kill("during the upload")

    with srv.client() as c, pytest.raises(httpx.TransportError):
        c.post("/api/batches", params=params, headers=headers,
               content=ndjson_body(N_CRASH, after_chunk=kill_midway))
    srv.start()
    with srv.client() as c:
        assert c.get("/api/batches").json()["data"] == []

    # Killed while it ingests what it got, then killed the moment the batch
    # shows up to another client: committed, but the 201 may not have gone out.
    accepted: str | None = None
    for moment in ("while ingesting", "as the batch appears"):
        answer = post_killed(crasher, moment, params=params, headers=headers)
        with srv.client() as c:
            listed = [b["id"] for b in c.get("/api/batches").json()["data"]]
        assert len(listed) <= 1, f"duplicate batches: {listed}"
        if answer is not None:
            assert answer.status_code == 201, answer.text
            assert listed == [answer.json()["id"]]
        if accepted is not None:
            assert listed == [accepted], "the accepted batch changed or vanished"
        if moment == "as the batch appears":
            assert listed, "a committed batch was lost"
        accepted = listed[0] if listed else None
        print(f"\nkilled {moment}: client got "
              f"{answer.status_code if answer is not None else 'no answer'}, "
              f"batch {'accepted' if accepted else 'not accepted'}")

    # The retry that gets through: created now, or replayed if it was accepted.
    with srv.client() as c:
        r = c.post("/api/batches", params=params, headers=headers, content=ndjson_body(N_CRASH))
        assert r.status_code == 201, r.text
        batch: dict[str, Any] = r.json()
        if accepted is not None:
            assert r.headers.get("Idempotent-Replayed") == "true"
            assert batch["id"] == accepted
        assert batch["counts"]["total"] == N_CRASH
        listed = [b["id"] for b in c.get("/api/batches").json()["data"]]
        assert listed == [batch["id"]], "a duplicate batch was created"
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


def test_crash_sigkill_loses_and_duplicates_nothing(
    make_server: Callable[..., Server], run_log: Path
) -> None:
    srv = make_server(lease_s=1.5, ingest_flush_items=2000)
    crasher = Crasher(srv)
    # Each kill can orphan an item at most once, so with this many attempts a
    # kill never turns into a failed item; failures would show as lost rows.
    params = {"task": "square", "max_attempts": 30}
    batch = submit_crashing(crasher, key="crash-test-upload", params=params)
    batch_id = batch["id"]

    recorded = 0
    for i, threshold in enumerate((1500, 4500, 7500, 10500, 13500, 16500)):
        b = wait_until(functools.partial(past, srv, batch_id, threshold), timeout_s=90,
                       what=f"progress past {threshold}")
        assert b["status"] == "closed", f"batch finished before kill {i}: {b['counts']}"
        assert b["counts"]["succeeded"] >= recorded, "a recorded result was lost in a kill"
        recorded = b["counts"]["succeeded"]
        crasher.restart(f"after {b['counts']['succeeded']} succeeded")
        if i == 2:
            # And once while it starts up: reaping, claiming, nothing committed yet.
            crasher.restart("right after a restart")

    with srv.client() as c:
        b = wait_batch(c, batch_id, timeout_s=120)
        assert b["status"] == "completed", b
        assert b["counts"] == {"total": N_CRASH, "queued": 0, "running": 0,
                               "succeeded": N_CRASH, "failed": 0, "cancelled": 0}
        assert b["records"] == {"total": N_CRASH, "succeeded": N_CRASH, "failed": 0}

        rows = export_rows(c, batch_id)
        seqs = [row["seq"] for row in rows]
        assert len(rows) == N_CRASH
        assert sorted(seqs) == list(range(N_CRASH)), "lost or duplicated rows"
        for row in rows:
            assert row["status"] == "succeeded", row
            n = row["input"]["n"]
            assert n == row["seq"], row
            assert row["output"] == {"n": n, "square": n * n}, row

        attempts: dict[str, int] = {}
        cursor = None
        while True:
            page = c.get(f"/api/batches/{batch_id}/items",
                         params={"limit": 1000, **({"cursor": cursor} if cursor else {})}).json()
            attempts.update((it["id"], it["attempts"]) for it in page["data"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(attempts) == N_CRASH
        assert {row["item_id"] for row in rows} == set(attempts)

        listed = c.get("/api/batches").json()["data"]
        assert [x["id"] for x in listed] == [batch_id]

    # The run log: every item ran, and a re-run only followed a lost lease.
    by_item = runs_by_item(read_runs(run_log), "run")
    assert set(by_item) == set(attempts), "an item never ran, or something else did"
    rerun = {i: rs for i, rs in by_item.items() if len(rs) > 1}
    for item_id, rs in by_item.items():
        tries = [r.attempt for r in rs]
        assert len(set(tries)) == len(tries), f"{item_id} ran twice in one attempt: {rs}"
        last = max(rs, key=lambda r: r.attempt)
        # The recorded outcome is the last claim's, and that claim ran.
        assert last.attempt == attempts[item_id], (item_id, rs, attempts[item_id])
        for r in rs:
            if r is not last:
                assert r.pid in crasher.killed_pids, f"{item_id} re-ran with no kill: {rs}"
    print(f"kills: {len(crasher.moments)} ({'; '.join(crasher.moments)})")
    print(f"items run more than once: {len(rerun)} of {N_CRASH} "
          f"(max runs of one item: {max((len(rs) for rs in by_item.values()), default=0)}, "
          f"max attempts: {max(attempts.values())})")
    assert len(crasher.moments) >= 5


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
        assert rows[1]["output"] == {"n": 3, "square": 9}

        r = c.post("/api/batches", json={"task": "square", "items": [{"n": i} for i in range(50)]})
        assert r.status_code == 201, r.text
        assert wait_batch(c, r.json()["id"], timeout_s=30)["status"] == "completed"
