"""``/api/webhooks``: the delivery log, the tenant's signing secret, and the body of a
native batch's ``webhook_url`` (event type ``batch.finished``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from batchd.api import jsonbody
from batchd.api.deps import Caller, Manager
from batchd.api.native.schemas import BATCH_FINISHED, batch_json
from batchd.domain.models import Batch, Item, iso
from batchd.domain.webhooks import WebhookAttempt, WebhookMessage
from batchd.events.webhooks import payloads, signing

router = APIRouter(tags=["webhooks"], route_class=jsonbody.PolicyRoute)


@payloads.register(BATCH_FINISHED)
def batch_finished(message: WebhookMessage, batch: Batch, item: Item | None) -> dict[str, Any]:
    """``{"type": "batch.finished", "timestamp", "data": <the Batch, as GET shows it>}``."""
    return {"type": BATCH_FINISHED, "timestamp": iso(message.created_at),
            "data": batch_json(batch, now=message.created_at)}


def message_json(m: WebhookMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "event": m.event,
        "url": m.url,
        "batch_id": m.batch_id,
        "item_id": None if m.item_rowid is None else f"itm_{m.item_rowid}",
        "status": m.status,
        "attempts": m.attempts,
        "created_at": iso(m.created_at),
        "next_attempt_at": iso(m.next_attempt_at) if m.status == "pending" else None,
        "last_attempt_at": iso(m.last_attempt_at),
        "delivered_at": iso(m.delivered_at),
        "last_status_code": m.last_status,
        "last_error": m.last_error,
    }


def attempt_json(a: WebhookAttempt) -> dict[str, Any]:
    return {"attempt": a.attempt, "at": iso(a.at), "status_code": a.status_code,
            "error": a.error, "duration_ms": round(a.duration_ms, 3)}


@router.get("/webhooks")
async def list_webhooks(
    caller: Caller, mgr: Manager, batch_id: str | None = None,
    status: Literal["pending", "delivered", "failed", "gone"] | None = None,
    cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Webhook messages, newest first: ``{data: [message], next_cursor}``."""
    rows, nxt = await mgr.webhook_messages(caller, batch_id=batch_id, status=status,
                                           cursor=cursor, limit=limit)
    return {"data": [message_json(m) for m in rows], "next_cursor": nxt}


@router.get("/webhooks/secret")
async def webhook_secret(caller: Caller, mgr: Manager) -> dict[str, Any]:
    """The tenant's signing secret (``whsec_…``): verify ``webhook-signature`` with it."""
    return {"secret": await mgr.webhook_secret(caller, candidate=signing.new_secret())}


@router.post("/webhooks/secret/rotate")
async def rotate_webhook_secret(caller: Caller, mgr: Manager) -> dict[str, Any]:
    """A new secret for the tenant (supervisor or admin); deliveries use it within 30 s."""
    secret = await mgr.webhook_secret(caller, candidate=signing.new_secret(), rotate=True)
    return {"secret": secret}


@router.get("/webhooks/{message_id}")
async def get_webhook(message_id: str, caller: Caller, mgr: Manager) -> dict[str, Any]:
    """A message and its delivery log: ``{…message, attempts_log: [{attempt, at,
    status_code, error, duration_ms}]}``."""
    message, attempts = await mgr.webhook_message(caller, message_id)
    return {**message_json(message), "attempts_log": [attempt_json(a) for a in attempts]}
