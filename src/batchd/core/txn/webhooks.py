"""The webhook outbox: messages written with the outcome they announce, then delivered.

Messages are written by the finish path (``finish_items``, a stop, a batch's end) in
the same transaction as the outcome they announce, so a committed outcome always has
its message. Delivery claims due messages with a lease (a crashed deliverer's messages
come back once it expires) and records every attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from batchd.core.txn.runner import Runner
from batchd.domain.models import new_id
from batchd.domain.webhooks import MessageStatus, WebhookAttempt, WebhookMessage
from batchd.store import script as q
from batchd.store.script import Script

Hook = tuple[str, str, int | None, str, str]
"""A message to write: ``(tenant_id, batch_id, item rowid or None, event, url)``."""


def enqueue(hooks: Iterable[Hook], now: float) -> Script[None]:
    """Write outbox messages inside the caller's transaction (that of the outcome)."""
    rows = [(new_id("msg"), *h, now, now) for h in hooks]
    if rows:
        yield q.each("insert_webhook_messages", rows)


def _message(r: Any) -> WebhookMessage:
    # columns: pk, id, tenant_id, batch_id, item_id, event, url, status, attempts, created_at,
    # next_attempt_at, last_attempt_at, delivered_at, last_status, last_error
    return WebhookMessage(*(r[i] for i in range(15)))


def _attempt(r: Any) -> WebhookAttempt:
    # columns: message_pk, attempt, at, status_code, error, duration_ms
    return WebhookAttempt(r[0], r[1], r[2], r[3], r[4], r[5])


def claim_webhooks(now: float, limit: int, lease_s: float) -> Script[list[WebhookMessage]]:
    rows = yield q.rows("claim_webhooks", now=now, limit=limit, lease_until=now + lease_s)
    return sorted((_message(r) for r in rows), key=lambda m: m.pk)


def record_webhook_attempt(
    a: WebhookAttempt, status: str, next_attempt_at: float | None
) -> Script[bool]:
    yield q.run("insert_webhook_attempt", a.message_pk, a.attempt, a.at, a.status_code,
                a.error, a.duration_ms)
    changed = yield q.run(
        "update_webhook_message", status=status, next_attempt_at=next_attempt_at,
        status_code=a.status_code, error=a.error, delivered=status == MessageStatus.DELIVERED,
        at=a.at, pk=a.message_pk, attempt=a.attempt,
    )
    return bool(changed == 1)


def next_webhook_at() -> Script[float | None]:
    due = yield q.value("next_webhook_at")
    return None if due is None else float(due)


def list_webhooks(
    tenant_id: str, owner: str | None, batch_id: str | None, status: str | None,
    before_pk: int | None, limit: int,
) -> Script[list[WebhookMessage]]:
    rows = yield q.rows("list_webhooks", tenant_id=tenant_id, owner=owner, batch_id=batch_id,
                        status=status, before_pk=before_pk, limit=limit)
    return [_message(r) for r in rows]


def get_webhook(
    message_id: str, tenant_id: str, owner: str | None
) -> Script[WebhookMessage | None]:
    row = yield q.one("webhook_with_owner", message_id, tenant_id)
    if row is None or (owner is not None and row[15] != owner):
        return None
    return _message(row)


def webhook_attempts(message_pk: int) -> Script[list[WebhookAttempt]]:
    return [_attempt(r) for r in (yield q.rows("webhook_attempts", message_pk))]


def webhook_secret(tenant_id: str) -> Script[str | None]:
    secret = yield q.value("webhook_secret", tenant_id)
    return str(secret) if secret else None


def set_webhook_secret(tenant_id: str, candidate: str, rotate: bool) -> Script[str]:
    secret = yield q.value("set_webhook_secret", tenant_id=tenant_id, candidate=candidate,
                           rotate=rotate)
    return candidate if secret is None else str(secret)


class WebhookOps(Runner):
    """The outbox of webhook messages, their delivery log and the tenants' secrets."""

    async def claim_webhooks(
        self, *, now: float, limit: int, lease_s: float
    ) -> list[WebhookMessage]:
        """Take up to ``limit`` due pending messages, oldest first, for ``lease_s``.

        Each taken message counts one more attempt and is not due again before the
        lease ends, so concurrent deliverers never take the same message at once.
        """
        return await self._write(claim_webhooks, now, limit, lease_s)

    async def record_webhook_attempt(
        self, attempt: WebhookAttempt, *, status: str, next_attempt_at: float | None
    ) -> bool:
        """Log ``attempt`` and move its message to ``status`` (due again at
        ``next_attempt_at`` when still pending).

        The log is always written; the message changes only while it is pending and
        ``attempt`` is its latest, so a late result of an expired lease never undoes a
        newer one. Returns whether the message changed.
        """
        return await self._write(record_webhook_attempt, attempt, status, next_attempt_at)

    async def next_webhook_at(self) -> float | None:
        """When the earliest pending message is due (None: nothing pending)."""
        return await self._read(next_webhook_at)

    async def list_webhooks(
        self, *, tenant_id: str, owner: str | None, batch_id: str | None, status: str | None,
        before_pk: int | None, limit: int,
    ) -> list[WebhookMessage]:
        """The tenant's messages, newest first (``owner``: only its batches')."""
        return await self._read(list_webhooks, tenant_id, owner, batch_id, status, before_pk,
                                limit)

    async def get_webhook(
        self, message_id: str, *, tenant_id: str, owner: str | None
    ) -> WebhookMessage | None:
        return await self._read(get_webhook, message_id, tenant_id, owner)

    async def webhook_attempts(self, message_pk: int) -> list[WebhookAttempt]:
        """A message's delivery log, oldest first."""
        return await self._read(webhook_attempts, message_pk)

    async def webhook_secret(self, tenant_id: str, *, candidate: str, rotate: bool = False) -> str:
        """The tenant's signing secret; ``candidate`` becomes it when it has none yet
        (or, with ``rotate``, replaces it)."""
        if not rotate:
            # A read first: the secret is asked for on every delivery, and set once.
            secret = await self._read(webhook_secret, tenant_id)
            if secret is not None:
                return secret
        return await self._write(set_webhook_secret, tenant_id, candidate, rotate)
