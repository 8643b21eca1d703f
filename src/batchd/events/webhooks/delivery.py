"""The delivery loop a worker runs: claim due outbox messages, sign, POST, record.

At-least-once: a message is claimed with a lease and recorded after its attempt; a
process killed in between leaves it pending, and it is sent again (same
``webhook-id``) once the lease ends. A 2xx answer delivers it, a 410 stops it for
good, anything else (another status, a redirect — never followed —, a timeout, a
refused address) is retried on the :class:`RetrySchedule`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any, Protocol

import httpx

from batchd import netguard
from batchd.domain import errors
from batchd.domain.models import Batch, Item
from batchd.domain.webhooks import MessageStatus, WebhookAttempt, WebhookMessage
from batchd.events.webhooks import payloads, signing
from batchd.events.webhooks.schedule import RetrySchedule

log = logging.getLogger(__name__)
SECRET_TTL_S = 30.0  # a rotated secret is used within this long


def _version() -> str:
    # The distribution's: importing the `batchd` package (above every layer) would cycle.
    try:
        return metadata.version("batchd")
    except metadata.PackageNotFoundError:  # run from a source tree
        return "dev"


USER_AGENT = f"batchd-webhooks/{_version()}"
# After a wake-up, wait this long before looking: the commits of that moment share one
# database read (seconds; a webhook goes out at most this much later).
WAKE_COALESCE_S = 0.02


class WebhookOutbox(Protocol):
    """The outbox a deliverer sends from (the engine's database,
    :class:`batchd.core.db.Database`), and the state its messages announce."""

    async def next_webhook_at(self) -> float | None:
        """When the earliest pending message is due (None: nothing pending)."""
        ...

    async def claim_webhooks(
        self, *, now: float, limit: int, lease_s: float
    ) -> list[WebhookMessage]:
        """Take up to ``limit`` due pending messages, oldest first, for ``lease_s``."""
        ...

    async def record_webhook_attempt(
        self, attempt: WebhookAttempt, *, status: str, next_attempt_at: float | None
    ) -> bool:
        """Log ``attempt`` and move its message to ``status``."""
        ...

    async def webhook_secret(self, tenant_id: str, *, candidate: str, rotate: bool = False) -> str:
        """The tenant's signing secret (``candidate`` when it has none yet)."""
        ...

    async def get_batch(self, batch_id: str, *, tenant_id: str | None) -> Batch | None: ...

    async def get_item(self, batch_id: str, rowid: int) -> Item | None: ...


class Undeliverable(Exception):
    """The message can never be sent (what it announces is gone)."""


class WebhookDeliverer:
    """Sends the outbox's due messages until cancelled.

    Args:
        store: the outbox.
        settings: timeouts, the retry schedule, the outbound address policy.
        clock: seconds since the epoch.
    """

    def __init__(
        self, *, store: WebhookOutbox, settings: Any, clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.timeout_s: float = settings.webhook_timeout_s
        self.lease_s: float = max(settings.webhook_lease_s, self.timeout_s + 1.0)
        self.poll_s: float = settings.webhook_poll_interval_s
        self.limit: int = settings.webhook_concurrency
        self.policy: netguard.OutboundPolicy = settings.outbound_policy()
        self.schedule = RetrySchedule(
            base_s=settings.webhook_retry_base_s, max_s=settings.webhook_retry_max_s,
            window_s=settings.webhook_retry_window_s,
        )
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._secrets: dict[str, tuple[str, float]] = {}

    def wake(self) -> None:
        """Look for due messages now (outcomes were just committed)."""
        self._wake.set()

    async def run(self) -> None:
        self._client = httpx.AsyncClient(
            transport=self._transport, follow_redirects=False, trust_env=False,
            headers={"User-Agent": USER_AGENT},
        )
        try:
            while True:
                self._wake.clear()
                # A read first: claiming is a write, and wake-ups come with every commit.
                try:
                    due = await self.store.next_webhook_at()
                    if due is not None and due <= self.clock():
                        if await self.deliver_due() >= self.limit:
                            continue  # more may be due
                        due = await self.store.next_webhook_at()
                except errors.StoreError as exc:  # the database comes back by itself
                    log.warning("webhook delivery paused (%s); retrying", exc.message)
                    due = None
                except Exception:  # the loop must outlive any one failure
                    log.warning("webhook delivery failed; retrying", exc_info=True)
                    due = None
                wait = self.poll_s if due is None else min(self.poll_s, due - self.clock())
                if wait > 0:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancel that lands with the wake-up, and the loop would never stop.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    # Wake-ups come with every commit (hundreds a second under load): the
                    # commits of the next moment share one look.
                    await asyncio.sleep(WAKE_COALESCE_S)
        finally:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def deliver_due(self) -> int:
        """One round: claim up to ``webhook_concurrency`` due messages and send them."""
        messages = await self.store.claim_webhooks(
            now=self.clock(), limit=self.limit, lease_s=self.lease_s
        )
        await asyncio.gather(*(self._deliver(m) for m in messages))
        return len(messages)

    async def _deliver(self, message: WebhookMessage) -> None:
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        final = False
        try:
            body = await self._body(message)
            status_code = await self._post(message, body)
        except Undeliverable as exc:
            error, final = str(exc), True
        except errors.BatchdError as exc:  # a refused address, the store
            error = exc.message
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a bug must cost an attempt, never the delivery loop
            log.exception("webhook %s: attempt failed", message.id)
            error = f"{type(exc).__name__}: {exc}"
        now = self.clock()
        status, next_at = self._verdict(message, status_code, final, now)
        if status_code is not None and not 200 <= status_code < 300 and status_code != 410:
            error = error or (
                f"redirect not followed ({status_code})" if 300 <= status_code < 400
                else f"HTTP {status_code}"
            )
        attempt = WebhookAttempt(
            message_pk=message.pk, attempt=message.attempts, at=now, status_code=status_code,
            error=error, duration_ms=(time.monotonic() - started) * 1000.0,
        )
        try:
            await self.store.record_webhook_attempt(attempt, status=status,
                                                    next_attempt_at=next_at)
        except errors.BatchdError:
            # Unrecorded: the lease runs out and the message is sent again (same id).
            log.warning("could not record webhook attempt of %s", message.id, exc_info=True)

    def _verdict(
        self, message: WebhookMessage, status_code: int | None, final: bool, now: float
    ) -> tuple[str, float | None]:
        if status_code is not None and 200 <= status_code < 300:
            return MessageStatus.DELIVERED, None
        if status_code == 410:
            return MessageStatus.GONE, None
        next_at = None if final else self.schedule.next_attempt_at(
            attempt=message.attempts, created_at=message.created_at, now=now
        )
        return (MessageStatus.FAILED, None) if next_at is None else (MessageStatus.PENDING,
                                                                      next_at)

    async def _body(self, message: WebhookMessage) -> bytes:
        batch = await self.store.get_batch(message.batch_id, tenant_id=message.tenant_id)
        if batch is None:
            raise Undeliverable(f"batch {message.batch_id} no longer exists")
        item = None
        if message.item_rowid is not None:
            item = await self.store.get_item(message.batch_id, message.item_rowid)
            if item is None:
                raise Undeliverable(f"item {message.item_rowid} no longer exists")
        return payloads.render(message, batch, item)

    async def _post(self, message: WebhookMessage, body: bytes) -> int:
        assert self._client is not None
        target = await netguard.resolve(message.url, self.policy)
        secret = await self._secret(message.tenant_id)
        signed = signing.headers(secret, message.id, int(self.clock()), body)
        request = self._client.build_request(
            "POST", target.request_url(), content=body,
            headers={**target.headers(), "Content-Type": "application/json", **signed},
            extensions={**target.extensions(), "timeout": httpx.Timeout(self.timeout_s).as_dict()},
        )
        response = await self._client.send(request, stream=True)  # the body is not read
        await response.aclose()
        return response.status_code

    async def _secret(self, tenant_id: str) -> str:
        cached = self._secrets.get(tenant_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        secret = await self.store.webhook_secret(tenant_id, candidate=signing.new_secret())
        self._secrets[tenant_id] = (secret, time.monotonic() + SECRET_TTL_S)
        return str(secret)
