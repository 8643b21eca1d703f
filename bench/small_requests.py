"""Small requests per second against one server, driven by ``wrk`` (a C load generator:
the client is not the bottleneck), HTTP/1.1 keep-alive, 32 connections.

    .venv/bin/python bench/small_requests.py [--seconds 10] [--concurrency 32] [--postgres]

Prints, from one run: ``GET /healthz``; AI queue enqueue (``POST /api/v1/batch/enqueue``,
one job per request, each its own write); single-result reads
(``GET /api/v1/batch/jobs/{id}/result``); and each rate as a share of /healthz's.
Needs ``wrk`` on the PATH (Debian: ``apt-get install wrk``). Not ``ab -k``: it speaks
HTTP/1.0, whose keep-alive uvicorn does not honour, so every ``ab`` request would pay
for a new connection.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack

import httpx
import orjson
from common import BenchServer, drop_pg_database, fresh_pg_database

API = "/api/v1/batch"
JOB = {"job_type": "sentiment_analysis", "payload": {"text": "strong growth, some risk"},
       "priority": 50}


POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""


def wrk(url: str, *, seconds: int, c: int, key: str | None = None,
        body: bytes | None = None) -> float:
    cmd = ["wrk", "-t", "1", "-c", str(c), "-d", f"{seconds}s"]
    if key:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if body is not None:
            script.write(POST % body.decode())
            script.flush()
            cmd += ["-s", script.name]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def a_finished_job(c: httpx.Client) -> str:
    job_id = c.post(f"{API}/enqueue", json=JOB).json()["job"]["id"]
    batch_id = c.post(f"{API}/internal/flush", json={"max_jobs": 10}).json()["batch_id"]
    while c.post(f"{API}/internal/poll", json={"batch_id": batch_id}).json()["status"] != "ended":
        time.sleep(0.1)
    assert c.get(f"{API}/jobs/{job_id}/result").status_code == 200
    return str(job_id)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10, help="per measured endpoint")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--postgres", action="store_true")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with ExitStack() as stack:
        url = None
        if a.postgres:
            url = fresh_pg_database()
            stack.callback(drop_pg_database, url)
        srv = stack.enter_context(BenchServer(database_url=url))
        c = stack.enter_context(srv.client())
        job_id = a_finished_job(c)
        t, conc = a.seconds, a.concurrency
        health = wrk(f"{srv.url}/healthz", seconds=t, c=conc)
        enqueue = wrk(f"{srv.url}{API}/enqueue", seconds=t, c=conc, key=srv.key,
                      body=orjson.dumps(JOB))
        result = wrk(f"{srv.url}{API}/jobs/{job_id}/result", seconds=t, c=conc, key=srv.key)
    where = "PostgreSQL" if a.postgres else "SQLite"
    print(f"small requests, one server on {where}, wrk -c {conc} (keep-alive), {t} s each")
    print(f"  GET /healthz           {health:>8,.0f} req/s")
    print(f"  AI queue enqueue       {enqueue:>8,.0f} req/s  ({enqueue / health:.0%} of /healthz)")
    print(f"  single-result read     {result:>8,.0f} req/s  ({result / health:.0%} of /healthz)")


if __name__ == "__main__":
    main()
