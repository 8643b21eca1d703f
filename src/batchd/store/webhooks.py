"""The storage interface of webhooks: the outbox, its delivery log and tenants' secrets.

Messages are written by the stores' finish path (``finish_items``, a stop, a batch's
end) in the same transaction as the outcome they announce, so a committed outcome
always has its message. Delivery claims due messages with a lease (a crashed
deliverer's messages come back once it expires) and records every attempt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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


MESSAGE_COLUMNS = (
    "pk, id, tenant_id, batch_id, item_id, event, url, status, attempts, created_at, "
    "next_attempt_at, last_attempt_at, delivered_at, last_status, last_error"
)
ATTEMPT_COLUMNS = "message_pk, attempt, at, status_code, error, duration_ms"


class WebhookStore(ABC):
    """The outbox of webhook messages (mixed into every Store backend)."""

    @abstractmethod
    async def claim_webhooks(
        self, *, now: float, limit: int, lease_s: float
    ) -> list[WebhookMessage]:
        """Take up to ``limit`` due pending messages, oldest first, for ``lease_s``.

        Each taken message counts one more attempt and is not due again before the
        lease ends, so concurrent deliverers never take the same message at once.
        """

    @abstractmethod
    async def record_webhook_attempt(
        self, attempt: WebhookAttempt, *, status: str, next_attempt_at: float | None
    ) -> bool:
        """Log ``attempt`` and move its message to ``status`` (due again at
        ``next_attempt_at`` when still pending).

        The log is always written; the message changes only while it is pending and
        ``attempt`` is its latest, so a late result of an expired lease never undoes a
        newer one. Returns whether the message changed.
        """

    @abstractmethod
    async def next_webhook_at(self) -> float | None:
        """When the earliest pending message is due (None: nothing pending)."""

    @abstractmethod
    async def list_webhooks(
        self, *, tenant_id: str, owner: str | None, batch_id: str | None, status: str | None,
        before_pk: int | None, limit: int,
    ) -> list[WebhookMessage]:
        """The tenant's messages, newest first (``owner``: only its batches')."""

    @abstractmethod
    async def get_webhook(
        self, message_id: str, *, tenant_id: str, owner: str | None
    ) -> WebhookMessage | None: ...

    @abstractmethod
    async def webhook_attempts(self, message_pk: int) -> list[WebhookAttempt]:
        """A message's delivery log, oldest first."""

    @abstractmethod
    async def webhook_secret(self, tenant_id: str, *, candidate: str, rotate: bool = False) -> str:
        """The tenant's signing secret; ``candidate`` becomes it when it has none yet
        (or, with ``rotate``, replaces it)."""
