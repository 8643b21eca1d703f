"""Tasks the test suite registers in its servers (BATCHD_TASKS=tests.support.tasks)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from batchd.domain.cost import CostModel
from batchd.tasks.context import TaskContext
from batchd.tasks.registry import Runner, task


def _log_run(ctx: TaskContext, what: str) -> None:
    path = os.environ.get("BATCHD_TEST_RUN_LOG")
    if path:
        line = f"{ctx.item_id} {ctx.attempt} {os.getpid()} {what} {time.time():.6f}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@task("tracked", version="1.0.0", mode="async", cost=0.01,
      runners=[Runner("cheap", cost=CostModel(per_record_usd=0.001))])
async def tracked(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleeps ``seconds`` and logs each run to BATCHD_TEST_RUN_LOG; reports ``cost_usd``
    when the record names one (more than its estimate, as a model's answer may cost)."""
    _log_run(ctx, "start")
    await asyncio.sleep(float(record.get("seconds", 0)))
    if "cost_usd" in record:
        ctx.report_usage(cost_usd=float(record["cost_usd"]))
    if ctx.attempt <= int(record.get("fail_times", 0)):
        raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    if record.get("fail"):
        raise RuntimeError("planned failure")
    _log_run(ctx, "end")
    return {"n": record.get("n"), "attempt": ctx.attempt}


@task("square", version="1.0.0", mode="inline")
def square(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """n*n, logging each run (crash and multi-worker tests count them).

    The output names the attempt that made it, so an export shows which claim's
    outcome was kept.
    """
    _log_run(ctx, "run")
    return {"n": record["n"], "square": record["n"] * record["n"], "attempt": ctx.attempt}


@task("gated", version="1.0.0", mode="async")
async def gated(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Runs until the file ``<gate>.<attempt>`` exists (fencing tests open it).

    Its usage and output tell its attempts apart: attempt k reports ``100 * k``
    tokens in, ``k`` tokens out and ``$0.25 * k``, so a batch's totals show whose
    outcome was counted, and how often.
    """
    _log_run(ctx, "start")
    gate = Path(f"{record['gate']}.{ctx.attempt}")
    deadline = time.monotonic() + float(record.get("max_s", 300))
    while not gate.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{gate} was never opened")
        await asyncio.sleep(0.02)
    ctx.report_usage(tokens_in=100 * ctx.attempt, tokens_out=ctx.attempt,
                     cost_usd=0.25 * ctx.attempt)
    _log_run(ctx, "end")
    return {"n": record.get("n"), "attempt": ctx.attempt, "pid": os.getpid()}


@task("blocking", version="1.0.0", mode="thread")
def blocking(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A sync handler that polls ctx.cancelled while it works."""
    deadline = time.monotonic() + float(record.get("seconds", 1))
    while time.monotonic() < deadline:
        if ctx.cancelled:
            raise RuntimeError("stopped on cancel")
        time.sleep(0.01)
    return {"done": True}


@task("cpu_sum", version="1.0.0", mode="process", vectorised=True)
def cpu_sum(records: list[dict[str, Any]], ctx: TaskContext) -> list[dict[str, Any]]:
    """CPU-bound work in the process pool; reports the pid that ran it."""
    ctx.report_usage(tokens_in=len(records), cost_usd=0.5)
    return [{"sum": sum(range(int(r["n"]))), "pid": os.getpid()} for r in records]


@task("overrun", version="1.0.0", mode="async", cost=0.01)
async def overrun(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A simulation template estimated at $0.01 that costs what it is told (``cost_usd``)."""
    cost = float(record.get("cost_usd", 0.01))
    ctx.report_usage(tokens_out=100, cost_usd=cost)
    return {"cost_usd": cost}
