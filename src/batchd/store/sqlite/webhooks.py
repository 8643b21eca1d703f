"""Webhook outbox, delivery log and signing secrets on SQLite (mixed into SqliteStore)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from batchd.domain.models import new_id
from batchd.store.sqlite.connection import SqliteConnections
from batchd.store.webhooks import (
    ATTEMPT_COLUMNS,
    MESSAGE_COLUMNS,
    MessageStatus,
    WebhookAttempt,
    WebhookMessage,
    WebhookStore,
)

O_COLUMNS = ", ".join(f"o.{c.strip()}" for c in MESSAGE_COLUMNS.split(","))

Hook = tuple[str, str, int | None, str, str]
"""A message to write: ``(tenant_id, batch_id, item rowid or None, event, url)``."""


def enqueue(conn: sqlite3.Connection, hooks: Iterable[Hook], now: float) -> None:
    """Write outbox messages inside the caller's transaction (that of the outcome)."""
    conn.executemany(
        "INSERT INTO webhook_outbox (id, tenant_id, batch_id, item_id, event, url, created_at, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(new_id("msg"), *h, now, now) for h in hooks],
    )


def _message(r: Any) -> WebhookMessage:
    return WebhookMessage(*tuple(r))


class SqliteWebhooks(WebhookStore):
    db: SqliteConnections

    async def claim_webhooks(
        self, *, now: float, limit: int, lease_s: float
    ) -> list[WebhookMessage]:
        def run(conn: sqlite3.Connection) -> list[WebhookMessage]:
            rows = conn.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?, "
                "last_attempt_at = ? WHERE pk IN (SELECT pk FROM webhook_outbox "
                "WHERE status = 'pending' AND next_attempt_at <= ? "
                f"ORDER BY next_attempt_at, pk LIMIT ?) RETURNING {MESSAGE_COLUMNS}",
                (now + lease_s, now, now, limit),
            ).fetchall()
            return sorted((_message(r) for r in rows), key=lambda m: m.pk)

        return await self.db.write(run)

    async def record_webhook_attempt(
        self, attempt: WebhookAttempt, *, status: str, next_attempt_at: float | None
    ) -> bool:
        a = attempt

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute(
                f"INSERT INTO webhook_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (a.message_pk, a.attempt, a.at, a.status_code, a.error, a.duration_ms),
            )
            cur = conn.execute(
                "UPDATE webhook_outbox SET status = ?, next_attempt_at = ?, last_status = ?, "
                "last_error = ?, delivered_at = CASE WHEN ? THEN ? ELSE delivered_at END "
                "WHERE pk = ? AND status = 'pending' AND attempts = ?",
                (status, next_attempt_at, a.status_code, a.error,
                 status == MessageStatus.DELIVERED, a.at, a.message_pk, a.attempt),
            )
            return cur.rowcount == 1

        return await self.db.write(run)

    async def next_webhook_at(self) -> float | None:
        row = await self.db.read(
            lambda c: c.execute(
                "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'"
            ).fetchone()
        )
        return None if row[0] is None else float(row[0])

    async def list_webhooks(
        self, *, tenant_id: str, owner: str | None, batch_id: str | None, status: str | None,
        before_pk: int | None, limit: int,
    ) -> list[WebhookMessage]:
        sql = (
            f"SELECT {O_COLUMNS} FROM webhook_outbox o JOIN batches b ON b.id = o.batch_id "
            "WHERE o.tenant_id = ?"
        )
        args: list[Any] = [tenant_id]
        for clause, value in (("b.owner = ?", owner), ("o.batch_id = ?", batch_id),
                              ("o.status = ?", status), ("o.pk < ?", before_pk)):
            if value is not None:
                sql += f" AND {clause}"
                args.append(value)
        sql += " ORDER BY o.pk DESC LIMIT ?"
        args.append(limit)
        return await self.db.read(lambda c: [_message(r) for r in c.execute(sql, args)])

    async def get_webhook(
        self, message_id: str, *, tenant_id: str, owner: str | None
    ) -> WebhookMessage | None:
        def run(conn: sqlite3.Connection) -> WebhookMessage | None:
            r = conn.execute(
                f"SELECT {O_COLUMNS}, b.owner FROM webhook_outbox o "
                "JOIN batches b ON b.id = o.batch_id WHERE o.id = ? AND o.tenant_id = ?",
                (message_id, tenant_id),
            ).fetchone()
            if r is None or (owner is not None and r[-1] != owner):
                return None
            return _message(tuple(r)[:-1])

        return await self.db.read(run)

    async def webhook_attempts(self, message_pk: int) -> list[WebhookAttempt]:
        return await self.db.read(
            lambda c: [
                WebhookAttempt(*tuple(r))
                for r in c.execute(
                    f"SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts WHERE message_pk = ? "
                    "ORDER BY id",
                    (message_pk,),
                )
            ]
        )

    async def webhook_secret(self, tenant_id: str, *, candidate: str, rotate: bool = False) -> str:
        if not rotate:
            row = await self.db.read(
                lambda c: c.execute(
                    "SELECT webhook_secret FROM tenants WHERE id = ?", (tenant_id,)
                ).fetchone()
            )
            if row is not None and row[0]:
                return str(row[0])
        row = await self.db.write(
            lambda c: c.execute(
                "UPDATE tenants SET webhook_secret = CASE WHEN ? THEN ? "
                "ELSE COALESCE(webhook_secret, ?) END WHERE id = ? RETURNING webhook_secret",
                (rotate, candidate, candidate, tenant_id),
            ).fetchone()
        )
        return str(row[0]) if row is not None else candidate
