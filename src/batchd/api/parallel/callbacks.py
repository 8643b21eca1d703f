"""The body of a run's ``webhook`` (Parallel's event type ``task_run.status``): ``{"type":
"task_run.status", "timestamp", "data": <the run, as the SDK's TaskRun>}``, sent once the
run has ended, signed per the Standard Webhooks specification (see
:mod:`batchd.events.webhooks`)."""

from __future__ import annotations

from typing import Any

from batchd.api.parallel import wire
from batchd.domain.models import Batch, Item
from batchd.domain.webhooks import WebhookMessage
from batchd.events.webhooks import payloads

EVENT = "parallel.task_run.status"  # the outbox's name; the body says task_run.status


@payloads.register(EVENT)
def run_status(message: WebhookMessage, batch: Batch, item: Item | None) -> dict[str, Any]:
    assert item is not None
    return {"type": "task_run.status", "timestamp": wire.timestamp(message.created_at),
            "data": wire.task_run(batch, item)}
