"""The webhook outbox: messages written with the outcome they announce, then delivered."""

from __future__ import annotations

from collections.abc import Iterable

from batchd.core.txn.runner import Runner
from batchd.domain.models import new_id
from batchd.store import script as q
from batchd.store.script import Script

Hook = tuple[str, str, int | None, str, str]
"""A message to write: ``(tenant_id, batch_id, item rowid or None, event, url)``."""


def enqueue(hooks: Iterable[Hook], now: float) -> Script[None]:
    """Write outbox messages inside the caller's transaction (that of the outcome)."""
    rows = [(new_id("msg"), *h, now, now) for h in hooks]
    if rows:
        yield q.each("insert_webhook_messages", rows)


class WebhookOps(Runner):
    """The outbox, the delivery log and signing secrets (still on the store: moving)."""
