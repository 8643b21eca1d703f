"""The body of a run's ``callback_webhook`` (event type ``task_run.status``).

``{"type": "task_run.status", "timestamp": …, "data": <the run, as GET
/v0/task/{task_id}/run/{run_id} shows it>}``, sent once the run has ended, signed
per the Standard Webhooks specification (see :mod:`batchd.events.webhooks`).
"""

from __future__ import annotations

from typing import Any

from batchd.api.taskruns.views import run_json, timestamp
from batchd.domain.models import Batch, Item
from batchd.domain.webhooks import WebhookMessage
from batchd.events.webhooks import payloads

EVENT = "task_run.status"


@payloads.register(EVENT)
def run_status(message: WebhookMessage, batch: Batch, item: Item | None) -> dict[str, Any]:
    assert item is not None
    return {"type": EVENT, "timestamp": timestamp(message.created_at),
            "data": run_json(batch, item)}
