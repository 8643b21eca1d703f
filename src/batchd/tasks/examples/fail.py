from __future__ import annotations

from typing import Any

from batchd.tasks.context import TaskContext
from batchd.tasks.registry import task

SCHEMA = {
    "type": "object",
    "properties": {
        "fail": {"type": "boolean"},
        "fail_times": {"type": "integer", "minimum": 0},
        "value": {},
    },
}


class DemandedFailure(RuntimeError):
    pass


@task("fail", version="1.0.0", input_schema=SCHEMA, mode="inline", max_attempts=3)
def fail(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Fail on demand: ``fail: true`` always fails, ``fail_times: n`` fails the first n attempts."""
    if record.get("fail"):
        raise DemandedFailure("failed on demand")
    if ctx.attempt <= int(record.get("fail_times", 0)):
        raise DemandedFailure(f"failed on demand (attempt {ctx.attempt})")
    return {"value": record.get("value"), "attempt": ctx.attempt}
