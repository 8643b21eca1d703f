"""Webhook outbox, delivery log and signing secrets on PostgreSQL (mixed into PostgresStore).

Deliverers on several machines claim due messages with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection

from batchd.domain.models import new_id
from batchd.store.webhooks import (
    ATTEMPT_COLUMNS,
    MESSAGE_COLUMNS,
    MessageStatus,
    WebhookAttempt,
    WebhookMessage,
    WebhookStore,
)

T = TypeVar("T")
Conn = AsyncConnection[Any]  # not execution's: execution imports this module
O_COLUMNS = ", ".join(f"o.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))

Hook = tuple[str, str, int | None, str, str]
"""A message to write: ``(tenant_id, batch_id, item rowid or None, event, url)``."""


async def enqueue(conn: Conn, hooks: Iterable[Hook], now: float) -> None:
    """Write outbox messages inside the caller's transaction (that of the outcome)."""
    rows = [(new_id("msg"), *h, now, now) for h in hooks]
    if not rows:
        return
    ids, tenants, batches, items, events, urls, created, due = (
        list(c) for c in zip(*rows, strict=True)
    )
    await conn.execute(
        "INSERT INTO webhook_outbox (id, tenant_id, batch_id, item_id, event, url, created_at, "
        "next_attempt_at) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
        "%s::bigint[], %s::text[], %s::text[], %s::float8[], %s::float8[])",
        (ids, tenants, batches, items, events, urls, created, due),
    )


class PostgresWebhooks(WebhookStore):
    if TYPE_CHECKING:
        async def _tx(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T: ...

        async def _read(self, sql: str, args: Any = ()) -> list[tuple[Any, ...]]: ...

    async def claim_webhooks(
        self, *, now: float, limit: int, lease_s: float
    ) -> list[WebhookMessage]:
        async def run(conn: Conn) -> list[WebhookMessage]:
            cur = await conn.execute(
                "WITH due AS (SELECT pk FROM webhook_outbox WHERE status = 'pending' "
                "AND next_attempt_at <= %s ORDER BY next_attempt_at, pk LIMIT %s "
                "FOR UPDATE SKIP LOCKED) "
                "UPDATE webhook_outbox o SET attempts = o.attempts + 1, next_attempt_at = %s, "
                f"last_attempt_at = %s FROM due WHERE o.pk = due.pk RETURNING {O_COLUMNS}",
                (now, limit, now + lease_s, now),
            )
            return sorted((WebhookMessage(*r) for r in await cur.fetchall()),
                          key=lambda m: m.pk)

        return await self._tx(run)

    async def record_webhook_attempt(
        self, attempt: WebhookAttempt, *, status: str, next_attempt_at: float | None
    ) -> bool:
        a = attempt

        async def run(conn: Conn) -> bool:
            await conn.execute(
                f"INSERT INTO webhook_attempts ({ATTEMPT_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (a.message_pk, a.attempt, a.at, a.status_code, a.error, a.duration_ms),
            )
            cur = await conn.execute(
                "UPDATE webhook_outbox SET status = %s, next_attempt_at = %s, last_status = %s, "
                "last_error = %s, delivered_at = CASE WHEN %s THEN %s ELSE delivered_at END "
                "WHERE pk = %s AND status = 'pending' AND attempts = %s",
                (status, next_attempt_at, a.status_code, a.error,
                 status == MessageStatus.DELIVERED, a.at, a.message_pk, a.attempt),
            )
            return cur.rowcount == 1

        return await self._tx(run)

    async def next_webhook_at(self) -> float | None:
        rows = await self._read(
            "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'"
        )
        return None if rows[0][0] is None else float(rows[0][0])

    async def list_webhooks(
        self, *, tenant_id: str, owner: str | None, batch_id: str | None, status: str | None,
        before_pk: int | None, limit: int,
    ) -> list[WebhookMessage]:
        sql = (
            f"SELECT {O_COLUMNS} FROM webhook_outbox o JOIN batches b ON b.id = o.batch_id "
            "WHERE o.tenant_id = %s"
        )
        args: list[Any] = [tenant_id]
        for clause, value in (("b.owner = %s", owner), ("o.batch_id = %s", batch_id),
                              ("o.status = %s", status), ("o.pk < %s", before_pk)):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        sql += " ORDER BY o.pk DESC LIMIT %s"
        args.append(limit)
        return [WebhookMessage(*r) for r in await self._read(sql, args)]

    async def get_webhook(
        self, message_id: str, *, tenant_id: str, owner: str | None
    ) -> WebhookMessage | None:
        rows = await self._read(
            f"SELECT {O_COLUMNS}, b.owner FROM webhook_outbox o "
            "JOIN batches b ON b.id = o.batch_id WHERE o.id = %s AND o.tenant_id = %s",
            (message_id, tenant_id),
        )
        if not rows or (owner is not None and rows[0][-1] != owner):
            return None
        return WebhookMessage(*rows[0][:-1])

    async def webhook_attempts(self, message_pk: int) -> list[WebhookAttempt]:
        rows = await self._read(
            f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE message_pk = %s ORDER BY id",
            (message_pk,),
        )
        return [WebhookAttempt(*r) for r in rows]

    async def webhook_secret(self, tenant_id: str, *, candidate: str, rotate: bool = False) -> str:
        if not rotate:
            rows = await self._read(
                "SELECT webhook_secret FROM tenants WHERE id = %s", (tenant_id,)
            )
            if rows and rows[0][0]:
                return str(rows[0][0])

        async def run(conn: Conn) -> str:
            cur = await conn.execute(
                "UPDATE tenants SET webhook_secret = CASE WHEN %s THEN %s "
                "ELSE COALESCE(webhook_secret, %s) END WHERE id = %s RETURNING webhook_secret",
                (rotate, candidate, candidate, tenant_id),
            )
            row = await cur.fetchone()
            return str(row[0]) if row is not None else candidate

        return await self._tx(run)
