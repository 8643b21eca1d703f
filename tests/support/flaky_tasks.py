"""A task whose items fail while a file exists: retry tests remove the file, then retry."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from batchd.tasks.context import TaskContext
from batchd.tasks.registry import task


class Broken(RuntimeError):
    pass


@task("flaky", version="1.0.0", mode="async", max_attempts=1)
async def flaky(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleeps ``seconds``; then fails (``broken: upstream down``) if ``record["broken"]``
    names a file that exists, else returns ``n``."""
    await asyncio.sleep(float(record.get("seconds", 0)))
    marker = record.get("broken")
    if marker and Path(marker).exists():
        raise Broken("upstream down")
    return {"n": record.get("n"), "attempt": ctx.attempt}
