"""Flow control of one upstream in one process: requests wait here for their turn.

A :class:`Gate` enforces this process's *share* of the upstream's limits (concurrency,
requests per minute, tokens per minute), which a renewal loop keeps up to date in the
database (:meth:`ShareStore.share_upstream`, decided by
:func:`batchd.domain.upstreams.plan`), so the limits hold across every process. A 429's
``Retry-After`` pauses the upstream for every process (it is recorded with the share).

Rates are sliding windows of the grant times: at most ``rpm/60`` requests in any second
(rpm >= 60, else ``rpm`` in any minute), at most ``tpm`` estimated tokens in any minute
(corrected to the real count once the answer says it). Each window is held a little
longer (:data:`JITTER`) than its length, for requests that reach the server later than
they left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from batchd.domain import upstreams
from batchd.domain.upstreams import Share, UpstreamLimits, Want

log = logging.getLogger(__name__)
JITTER = 0.1  # a rate window is held this fraction longer than it is
TPM_WINDOW_S = upstreams.LONG_WINDOW_S
IDLE_ROUNDS = 4  # renewals without work before the share is given back


class ShareStore(Protocol):
    async def share_upstream(
        self, name: str, *, limits: UpstreamLimits, process_id: str, want: Want, now: float,
        lease_s: float, paused_until: float = 0.0,
    ) -> Share: ...

    async def release_upstream(self, name: str, *, process_id: str) -> None: ...


class MemoryShares:
    """A :class:`ShareStore` for one process alone (no database): the same plan."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, upstreams.Held]] = {}

    async def share_upstream(
        self, name: str, *, limits: UpstreamLimits, process_id: str, want: Want, now: float,
        lease_s: float, paused_until: float = 0.0,
    ) -> Share:
        rows = self.rows.setdefault(name, {})
        mine = rows.get(process_id)
        paused = max(paused_until, mine.paused_until if mine else 0.0)
        decided = upstreams.plan(limits, me=process_id, want=want, others=list(rows.values()),
                                 now=now, lease_until=now + lease_s, paused_until=paused)
        rows[process_id] = decided.held
        return decided

    async def release_upstream(self, name: str, *, process_id: str) -> None:
        self.rows.get(name, {}).pop(process_id, None)


class TooLarge(Exception):
    """The request alone needs more tokens than the upstream allows in a minute."""


@dataclass(slots=True)
class Ticket:
    """A request let through: what it was charged, to correct once its answer is in."""

    tokens: list[float]  # [time, tokens] entry of the tokens window (shared, mutable)


class Gate:
    """The gate of upstream ``name`` in this process (see the module)."""

    def __init__(self, name: str, limits: UpstreamLimits, *, store: ShareStore, process_id: str,
                 renew_s: float, lease_s: float, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.limits = limits
        self.store = store
        self.process_id = process_id
        self.renew_s = renew_s
        self.lease_s = lease_s
        self.clock = clock
        self.unlimited = not (limits.concurrency or limits.rpm or limits.tpm)
        self.in_flight = 0
        self.waiting = 0
        self.share: Share | None = None
        self.valid_until = 0.0
        self.paused_until = 0.0  # a pause this process learnt and has not recorded yet
        self.sent: deque[float] = deque()
        self.tokens: deque[list[float]] = deque()
        self.tokens_sum = 0.0
        self.cond = asyncio.Condition()
        self._renewer: asyncio.Task[None] | None = None
        self._renew_now = asyncio.Event()
        self.peak_in_flight = 0

    # the requests' side
    async def acquire(self, tokens: int) -> Ticket:
        """Wait until this request may go; raises :class:`TooLarge` if it never may."""
        if self.limits.tpm and tokens > self.limits.tpm:
            raise TooLarge(f"the request needs about {tokens} tokens, more than the "
                           f"upstream's {self.limits.tpm} tokens per minute")
        if self.unlimited:
            return self._admit(tokens, self.clock())
        if not self.waiting:  # nobody is ahead: no need to queue for the condition
            now = self.clock()
            if self._wait_s(now, tokens) == 0.0:
                return self._admit(tokens, now)
        self.waiting += 1
        self._ensure_renewer()
        try:
            async with self.cond:
                while True:
                    now = self.clock()
                    wait = self._wait_s(now, tokens)
                    if wait == 0.0:
                        return self._admit(tokens, now)
                    if wait is None:
                        self._ensure_renewer()
                        self._renew_now.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.cond.wait(), wait or self.renew_s)
        finally:
            self.waiting -= 1

    def release(self, ticket: Ticket, *, tokens: int | None = None) -> None:
        """The request has its answer (``tokens``: what it really used, when known)."""
        self.in_flight -= 1
        if tokens is not None and self.limits.tpm:
            self.tokens_sum += tokens - ticket.tokens[1]
            ticket.tokens[1] = tokens
        if self.waiting:
            self._spawn_notify()

    def pause(self, seconds: float) -> None:
        """The upstream said 429: nobody sends before ``seconds`` from now."""
        until = self.clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self._renew_now.set()

    def _admit(self, tokens: int, now: float) -> Ticket:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        entry = [now, float(tokens)]
        if self.limits.rpm:
            self.sent.append(now)
        if self.limits.tpm:
            self.tokens.append(entry)
            self.tokens_sum += tokens
        return Ticket(tokens=entry)

    def _wait_s(self, now: float, tokens: int) -> float | None:
        """0: go now; seconds to wait; None: wait for a renewal or a release."""
        share = self.share
        if share is None or now > self.valid_until:
            return None
        paused = max(share.paused_until, self.paused_until)
        if now < paused:
            return paused - now
        if self.limits.concurrency and self.in_flight >= share.concurrency:
            return None
        if self.limits.rpm:
            window, allowed = upstreams.rpm_window(share.rpm)
            held = window * (1 + JITTER)
            self._prune(now)
            if allowed <= 0:
                return None
            if len(self.sent) >= allowed:
                return max(0.001, self.sent[-allowed] + held - now)
        if self.limits.tpm:
            self._prune(now)
            if share.tpm <= 0:
                return None
            if self.tokens_sum + tokens > share.tpm:
                return max(0.001, self.tokens[0][0] + TPM_WINDOW_S * (1 + JITTER) - now
                           if self.tokens else self.renew_s)
        return 0.0

    def _prune(self, now: float) -> None:
        if self.sent:
            window, _ = upstreams.rpm_window(self.share.rpm if self.share else 0)
            horizon = now - max(window, upstreams.RATE_WINDOW_S) * (1 + JITTER)
            while self.sent and self.sent[0] < horizon:
                self.sent.popleft()
        horizon = now - TPM_WINDOW_S * (1 + JITTER)
        while self.tokens and self.tokens[0][0] < horizon:
            self.tokens_sum -= self.tokens.popleft()[1]

    def _spawn_notify(self) -> None:
        async def notify() -> None:
            async with self.cond:
                self.cond.notify(1)

        task = asyncio.ensure_future(notify())
        task.add_done_callback(lambda t: None)

    # the share's side
    def _want(self, now: float) -> Want:
        self._prune(now)
        window, _ = upstreams.rpm_window(self.share.rpm if self.share else 0)
        return Want(demand=self.in_flight + self.waiting, in_flight=self.in_flight,
                    rpm_used=int(len(self.sent) * upstreams.LONG_WINDOW_S / window),
                    tpm_used=int(self.tokens_sum + 0.999))

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_loop())

    async def _renew_loop(self) -> None:
        while True:
            await self._hold()
            with contextlib.suppress(Exception):
                await self.store.release_upstream(self.name, process_id=self.process_id)
            if not self.waiting:  # else work arrived while the share was given back
                return

    async def _hold(self) -> None:
        """Renew the share until there has been nothing to do for a while; then stop
        using it (it is given back next)."""
        idle = 0
        while True:
            await self._renew()
            want = self._want(self.clock())
            idle = 0 if (want.demand or want.rpm_used or want.tpm_used) else idle + 1
            if idle >= IDLE_ROUNDS:
                self.share = None  # nothing is let through from here on
                return
            self._renew_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._renew_now.wait(), self.renew_s)

    async def _renew(self) -> None:
        now = self.clock()
        try:
            share = await self.store.share_upstream(
                self.name, limits=self.limits, process_id=self.process_id,
                want=self._want(now), now=now, lease_s=self.lease_s,
                paused_until=self.paused_until,
            )
        except Exception as exc:  # the share runs out at its lease; until then it holds
            log.warning("could not renew the share of upstream %s: %s", self.name, exc)
            return
        self.share = share
        # Stop one renewal short of the lease: the others count this share until then.
        self.valid_until = share.held.lease_until - self.renew_s
        async with self.cond:
            self.cond.notify_all()
