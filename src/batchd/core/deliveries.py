"""The webhook outbox as callers see it: messages, their attempts, the signing secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchd.core import access, paging, roles
from batchd.core.access import Access
from batchd.domain import errors
from batchd.domain.models import Principal
from batchd.domain.webhooks import WebhookAttempt, WebhookMessage

if TYPE_CHECKING:
    from batchd.core.db import Database


class Deliveries:
    def __init__(self, *, store: Database, access: Access) -> None:
        self.store = store
        self.access = access

    async def messages(
        self, principal: Principal, *, batch_id: str | None, status: str | None,
        cursor: str | None, limit: int,
    ) -> tuple[list[WebhookMessage], str | None]:
        """The outbox's messages the caller may see, newest first."""
        if batch_id is not None:
            await self.access.batch(principal, batch_id)
        rows = await self.store.list_webhooks(
            tenant_id=principal.tenant_id, owner=access.owner_scope(principal),
            batch_id=batch_id, status=status, before_pk=paging.decode_cursor(cursor, "w"),
            limit=limit + 1,
        )
        return paging.next_cursor(rows, limit, "w", "pk")

    async def message(
        self, principal: Principal, message_id: str
    ) -> tuple[WebhookMessage, list[WebhookAttempt]]:
        """A message and its delivery log."""
        message = await self.store.get_webhook(
            message_id, tenant_id=principal.tenant_id, owner=access.owner_scope(principal),
        )
        if message is None:
            raise errors.NotFound(f"webhook message {message_id} not found")
        return message, await self.store.webhook_attempts(message.pk)

    async def secret(self, principal: Principal, *, candidate: str, rotate: bool = False) -> str:
        """The tenant's signing secret (made on first use); rotating needs a supervisor."""
        if rotate:
            roles.require_supervisor(principal, "rotating the webhook secret")
        return await self.store.webhook_secret(principal.tenant_id, candidate=candidate,
                                               rotate=rotate)
