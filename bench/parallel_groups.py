"""Parallel's Task Groups on your own model server: 10,000 task-spec runs in one group
against the stand-in model server (20 ms a request), driven by the official
``parallel-web`` SDK, with one client following the group's events stream.

Prints runs per second end to end (group created to the stream's last event, every run
completed), the events per second that one streaming client received while the runs
ran, and the events per second of a replay of the whole stream (``last_event_id`` 0,
every run already ended: the stream's own ceiling).

    .venv/bin/python bench/parallel_groups.py [--runs 10000] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, BenchServer

sys.path.insert(0, str(ROOT))
import parallel  # noqa: E402
from parallel.types import TaskRunEvent  # noqa: E402
from tests.support.model_server import StandIn  # noqa: E402

SPEC: Any = {"output_schema": {"type": "json", "json_schema": {
    "type": "object", "required": ["summary"],
    "properties": {"summary": {"type": "string"}, "score": {"type": "integer"}}}}}
PER_CALL = 1000


class Follower(threading.Thread):
    """One client reading a group's events stream to its end."""

    def __init__(self, client: parallel.Parallel, group_id: str, last_event_id: str | None
                 ) -> None:
        super().__init__(daemon=True)
        self.client, self.group_id, self.after = client, group_id, last_event_id
        self.runs = self.events = 0
        self.first = self.last = 0.0
        self.statuses: list[str] = []

    def run(self) -> None:
        for event in self.client.task_group.events(self.group_id, last_event_id=self.after):
            now = time.perf_counter()
            self.first = self.first or now
            self.last = now
            self.events += 1
            if isinstance(event, TaskRunEvent):
                self.runs += 1
                self.statuses.append(event.run.status)


def user_key(srv: BenchServer) -> str:
    with srv.client() as c:
        r = c.post("/api/keys", json={"tenant": "bench", "role": "user", "limits": {
            "max_batch_size": -1, "api_calls": -1, "items": -1, "cost_usd": -1}})
        r.raise_for_status()
        return str(r.json()["key"])


def run(srv: BenchServer, stand: StandIn, n: int) -> None:
    client = parallel.Parallel(api_key=user_key(srv), base_url=srv.url, max_retries=0,
                               timeout=600)
    t0 = time.perf_counter()
    group = client.task_group.create(metadata={"bench": "parallel_groups"})
    follower: Follower | None = None
    t_added = t0
    for start in range(0, n, PER_CALL):
        client.task_group.add_runs(group.task_group_id, default_task_spec=SPEC, inputs=[
            {"input": {"company": f"c{i}"}, "processor": "base"}
            for i in range(start, min(n, start + PER_CALL))])
        if follower is None:  # with runs in it, the group's stream lasts until they end
            follower = Follower(client, group.task_group_id, None)
            follower.start()
        t_added = time.perf_counter()
    assert follower is not None
    follower.join()
    wall = follower.last - t0
    done = client.task_group.retrieve(group.task_group_id).status
    assert follower.runs == n and set(follower.statuses) == {"completed"}, (
        follower.runs, set(follower.statuses))
    assert done.task_run_status_counts == {"completed": n}, done
    live_s = follower.last - follower.first
    print(f"runs: {n:,} in one group, added in {n // PER_CALL} calls of {PER_CALL} "
          f"({t_added - t0:.2f} s)")
    print(f"end to end (group created to the last run's event): {wall:.2f} s -> "
          f"{n / wall:,.0f} runs/s")
    print(f"one streaming client while the runs ran: {follower.events:,} events "
          f"({follower.runs:,} run events) in {live_s:.2f} s -> "
          f"{follower.events / live_s:,.0f} events/s")
    replay = Follower(client, group.task_group_id, "0")
    t1 = time.perf_counter()
    replay.run()
    replay_s = time.perf_counter() - t1
    assert replay.runs == n
    print(f"replay of the whole stream (last_event_id=0): {replay.events:,} events in "
          f"{replay_s:.2f} s -> {replay.events / replay_s:,.0f} events/s")
    stats = stand.stats()
    print(f"upstream: {stats['requests']:,} requests, peak concurrency "
          f"{stats['peak_concurrency']}, peak {stats['peak_rate']} requests in a second")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    stand = StandIn(log_path=str(Path(tempfile.mkdtemp()) / "stand-in.log"), latency_s=0.02)
    ups = [{"name": "stand-in", "base_url": stand.base_url, "models": ["bench"],
            "limits": {"concurrency": 256}}]
    procs = {"base": {"model": "bench", "usd_per_run": 0.01}}
    try:
        with BenchServer(database_url=args.database_url, upstreams=json.dumps(ups),
                         parallel_processors=json.dumps(procs), worker_concurrency=256) as srv:
            run(srv, stand, args.runs)
            print(f"server peak RSS: {srv.peak_rss / 1e6:.0f} MB")
    except httpx.HTTPError as exc:
        raise SystemExit(f"bench failed: {exc}") from None
    finally:
        stand.stop()


if __name__ == "__main__":
    main()
