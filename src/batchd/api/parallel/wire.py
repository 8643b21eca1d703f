"""Runs, groups and their events as the ``parallel-web`` SDK's types (``TaskRun``,
``TaskGroup``, ``TaskGroupStatus``, ``TaskRunResult``, ``TaskRunEvent``,
``TaskGroupStatusEvent``, ``RunInput``), built as plain dicts: a group's streams carry
thousands of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from batchd.api.parallel.errors import error_object
from batchd.core import taskgroups
from batchd.domain.models import Batch, Item

# The engine's item states in the SDK's words (Parallel's cancelling, action_required
# have no engine state: nothing ever waits on a caller).
STATUS = {"queued": "queued", "running": "running", "succeeded": "completed",
          "failed": "failed", "cancelled": "cancelled"}
ENGINE_STATUS = {v: k for k, v in STATUS.items()}
ACTIVE = ("queued", "running")


def timestamp(ts: float | None) -> str | None:
    """RFC 3339, UTC."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def run_input(item: Item) -> dict[str, Any]:
    """The run as submitted (the SDK's ``RunInput``)."""
    return orjson.loads(item.input)  # type: ignore[no-any-return]


def task_run(batch: Batch, item: Item, run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SDK's ``TaskRun``; ``run``: the item's input, if already read."""
    run = run if run is not None else run_input(item)
    error = None
    if item.error is not None and item.status != "succeeded":
        error = error_object(str(item.error.get("message") or item.error),
                             {"code": item.error.get("code")})
        error["ref_id"] = item.id
    return {
        "run_id": item.id, "interaction_id": item.id,
        "status": STATUS.get(item.status, item.status), "is_active": item.status in ACTIVE,
        "processor": run.get("processor", ""), "metadata": run.get("metadata"),
        "taskgroup_id": batch.id if taskgroups.kind_of(batch) == taskgroups.GROUP else None,
        "created_at": timestamp(batch.created_at),
        "modified_at": timestamp(item.finished_at or item.started_at or batch.created_at),
        "error": error, "warnings": None,
    }


def output(item: Item) -> dict[str, Any] | None:
    """The SDK's ``TaskRunJsonOutput`` or ``TaskRunTextOutput`` of a completed run."""
    if item.status != "succeeded" or item.output is None:
        return None
    out = orjson.loads(item.output)
    return {"type": out.get("type", "text"), "content": out.get("content"), "basis": []}


def result(batch: Batch, item: Item) -> dict[str, Any]:
    """The SDK's ``TaskRunResult``."""
    return {"run": task_run(batch, item), "output": output(item)}


def group_status(batch: Batch) -> dict[str, Any]:
    """The SDK's ``TaskGroupStatus``."""
    counts = {"queued": batch.n_queued, "running": batch.n_running,
              "completed": batch.n_succeeded, "failed": batch.n_failed,
              "cancelled": batch.n_cancelled}
    active = taskgroups.is_active(batch)
    done = batch.n_succeeded + batch.n_failed + batch.n_cancelled
    return {
        "num_task_runs": batch.n_total, "is_active": active,
        "task_run_status_counts": {k: v for k, v in counts.items() if v},
        "status_message": f"{done} of {batch.n_total} runs ended" if active else
        f"all {batch.n_total} runs ended",
        "modified_at": timestamp(batch.finished_at or batch.started_at or batch.created_at),
    }


def group(batch: Batch) -> dict[str, Any]:
    """The SDK's ``TaskGroup``."""
    md = batch.metadata.get(taskgroups.MARKER) or {}
    return {"taskgroup_id": batch.id, "status": group_status(batch),
            "metadata": md.get("metadata"), "created_at": timestamp(batch.created_at)}


def status_event(batch: Batch, cursor: int) -> dict[str, Any]:
    """The SDK's ``TaskGroupStatusEvent``."""
    return {"type": "task_group_status", "event_id": str(cursor),
            "status": group_status(batch)}


def run_event(batch: Batch, item: Item, event_id: str, *, with_input: bool = False,
              with_output: bool = False) -> dict[str, Any]:
    """The SDK's ``TaskRunEvent``."""
    run = run_input(item)
    return {"type": "task_run.state", "event_id": event_id, "run": task_run(batch, item, run),
            "input": run if with_input else None,
            "output": output(item) if with_output else None}
