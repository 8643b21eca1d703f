"""The dialect's words and objects: run statuses, times, a run, the status map's groups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from batchd.domain.models import Batch, Item

# Status map groups, in the document's order, and the engine states in each. A
# cancelled run (by fail-fast, a budget or a cancel) is one that did not complete:
# it is grouped with the failed ones, its error saying why. Nothing ever waits for
# tool calls in batchd, so that group is always empty.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("queued", ("queued",)),
    ("running", ("running",)),
    ("awaiting_tool_calls", ()),
    ("complete", ("succeeded",)),
    ("failed", ("failed", "cancelled")),
)
# A run's status is the status-map group its item's status falls in.
STATUS = {status: group for group, states in GROUPS for status in states}
MARKER = "taskruns"  # batches made through this dialect carry it in their metadata


def timestamp(ts: float | None) -> str | None:
    """``2025-01-08T11:30:20.258784``: UTC, microseconds, no offset, as the document."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def is_taskruns(batch: Batch) -> bool:
    return MARKER in batch.metadata


def run_json(batch: Batch, item: Item) -> dict[str, Any]:
    return {
        "run_id": item.id,
        "task_id": batch.task,
        "batch_run_id": batch.id,
        "status": STATUS.get(item.status, item.status),
        "is_active": item.status in ("queued", "running"),
        "runner": item.runner or batch.runner,
        "input": {"arguments": orjson.loads(item.input)},
        "output": orjson.loads(item.output) if item.output is not None else None,
        "error": item.error,
        "usage": item.usage,
        "created_at": timestamp(batch.created_at),
        "modified_at": timestamp(item.finished_at or item.started_at or batch.created_at),
    }
