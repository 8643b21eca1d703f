"""Where one ``batchd serve`` spends its CPU on a no-op batch created with no settings:
py-spy samples the server (only threads holding the GIL, so time spent waiting for it is
not counted as work) while it runs, and this prints the functions that hold it most.

    .venv/bin/python bench/profile_noop.py [--items 100000] [--top 25] [--raw FILE]

Needs py-spy (``pip install py-spy``). Run with another checkout's interpreter to profile
that checkout's server (its own ``.venv``; the server runs that interpreter's batchd).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import BenchServer, wait_terminal


def spy_binary() -> str:
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return found


def summarize(raw: Path, top: int) -> tuple[int, list[tuple[str, int]]]:
    """Self samples per function (``name (file:line)`` folded to ``name (file)``)."""
    per: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        name, _, where = leaf.partition(" (")
        per[f"{name} ({where.rsplit(':', 1)[0]})"] += int(count)
        total += int(count)
    return total, per.most_common(top)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--raw", type=Path, default=None, help="keep py-spy's folded stacks here")
    a = ap.parse_args()
    raw = a.raw or Path(tempfile.mkdtemp()) / "stacks.txt"
    body = b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(a.items))
    with BenchServer() as srv, srv.client() as c:
        assert srv.proc is not None
        spy = subprocess.Popen(
            [spy_binary(), "record", "-p", str(srv.proc.pid), "--gil", "-r", "250",
             "-f", "raw", "-o", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attached
        t0 = time.perf_counter()
        r = c.post("/api/batches", params={"task": "echo"}, content=body,
                   headers={"Content-Type": "application/x-ndjson"})
        r.raise_for_status()
        b = wait_terminal(c, r.json()["id"])
        wall = time.perf_counter() - t0
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    assert b["counts"]["succeeded"] == a.items, b["counts"]
    total, rows = summarize(raw, a.top)
    print(f"no-op, {a.items:,} items, no settings: submit to done {wall:.2f} s "
          f"({a.items / wall:,.0f} items/s); {total:,} samples holding the GIL (250/s)")
    for name, n in rows:
        print(f"{n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
