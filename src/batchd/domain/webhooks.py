"""Webhook messages: the outbox's rows and their delivery log.

Messages are written in the same transaction as the outcome they announce, so a
committed outcome always has its message. Delivery claims due messages with a lease
(a crashed deliverer's messages come back once it expires) and records every attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MessageStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being delivered)
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # every attempt of the retry schedule failed
    GONE = "gone"  # the receiver answered 410 Gone: never tried again


@dataclass(slots=True)
class WebhookMessage:
    """One event for one URL; ``id`` is the ``webhook-id`` every attempt carries."""

    pk: int
    id: str
    tenant_id: str
    batch_id: str
    item_rowid: int | None
    event: str
    url: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float | None
    last_attempt_at: float | None
    delivered_at: float | None
    last_status: int | None
    last_error: str | None


@dataclass(slots=True)
class WebhookAttempt:
    """One delivery attempt: the receiver's status code, or the error that stopped it."""

    message_pk: int
    attempt: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: float
