from __future__ import annotations

import asyncio
from typing import Any

from batchd.tasks.context import TaskContext
from batchd.tasks.registry import task

SCHEMA = {
    "type": "object",
    "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
}


@task("sleep", version="1.0.0", input_schema=SCHEMA, cost=0.001)
async def sleep(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``seconds`` (default 0.1) and report how long it slept."""
    seconds = float(record.get("seconds", 0.1))
    await asyncio.sleep(seconds)
    ctx.report_usage(cost_usd=0.001)
    return {"slept": seconds}
