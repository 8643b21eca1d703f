from __future__ import annotations

from typing import Any

from batchd.tasks.registry import task


@task("echo", version="1.0.0", mode="inline")
def echo(record: Any) -> Any:
    """Return the input unchanged (a no-op, for tests and benchmarks)."""
    return record
