"""Tasks of the task batch runs tests (BATCHD_TASKS=…,tests.support.taskrun_tasks)."""

from __future__ import annotations

import asyncio
from typing import Any

from batchd.domain.cost import CostModel
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.registry import Runner, task

COMPANY_SCHEMA = {
    "type": "object",
    "required": ["company"],
    "properties": {"company": {"type": "string", "minLength": 1}, "country": {"type": "string"}},
}


@task("company_profile", mode="async", input_schema=COMPANY_SCHEMA, cost=0.002,
      output_schema={"type": "object"},
      runners=[Runner("lite", model="small", cost=CostModel(per_record_usd=0.001)),
               Runner("neon", model="medium", timeout_s=30),
               Runner("pro", model="large", cost=CostModel(per_record_usd=0.01))])
async def company_profile(arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A nested profile of ``company``; ``fail`` fails the run, ``seconds`` delays it."""
    await asyncio.sleep(float(arguments.get("seconds", 0)))
    if arguments.get("fail"):
        raise RecordError("planned failure", code="planned")
    name = arguments["company"]
    return {
        "name": f"{name} Inc",
        "runner": ctx.runner,
        "hq": {"city": "San Francisco", "country": arguments.get("country", "US")},
        "tags": ["ai", name.lower()],
    }
