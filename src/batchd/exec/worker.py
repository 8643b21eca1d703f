"""The worker loop: claim groups of items, run them, group-commit outcomes; reap and heartbeat."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from batchd.domain import errors
from batchd.domain.models import (
    NO_FREED_SLOTS,
    ClaimedItem,
    FreedSlots,
    Outcome,
    Promotion,
    item_public_id,
    new_id,
)
from batchd.domain.states import ItemStatus
from batchd.domain.taskdefs import TaskDefStore
from batchd.events.webhooks.delivery import WebhookDeliverer, WebhookOutbox
from batchd.exec import outcomes
from batchd.exec.base import Executor, RetryDelay, WorkSource
from batchd.exec.local import run_sync as _run_sync
from batchd.settings import Settings
from batchd.tasks.catalog import TaskCatalog
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.registry import TaskDef, TaskRegistry

log = logging.getLogger(__name__)
# A group commit that failed is tried again after this long, doubling up to the max.
FLUSH_RETRY_MIN_S = 0.1
FLUSH_RETRY_MAX_S = 1.0
# The most items of one batch a worker holds in reserve (as many as it runs of the batch,
# up to this): a full batch's next item starts in a freed slot with no claim in between.
RESERVE_MAX = 64


class WorkerStore(WorkSource, WebhookOutbox, TaskDefStore, Protocol):
    """What a worker needs of the database: its work, the webhook outbox, task definitions."""


@dataclass(slots=True)
class _Running:
    item: ClaimedItem
    ctx: TaskContext
    task: asyncio.Task[None] | None = None


class Worker:
    """Claims ready items from the store and runs them until stopped.

    Args:
        store: where items live (the engine's database).
        registry: the tasks this worker can run.
        executor: how handlers are run.
        settings: concurrency, lease and commit settings.
        retry_delay: the backoff before a failed item's next attempt.
        clock: seconds since the epoch, for leases and recorded times (injected in tests).
        catalog: tasks defined over the API (one on ``store`` when omitted).
    """

    def __init__(
        self, *, store: WorkerStore, registry: TaskRegistry, executor: Executor,
        settings: Settings, retry_delay: RetryDelay, metrics: Any = None,
        clock: Callable[[], float] = time.time, catalog: TaskCatalog | None = None,
    ) -> None:
        self.clock = clock
        self.catalog = catalog or TaskCatalog(store=store, registry=registry, settings=settings)
        # Webhooks of recorded outcomes are delivered from this process too.
        self.webhooks = (
            WebhookDeliverer(store=store, settings=settings, clock=clock)
            if settings.webhook_delivery else None
        )
        self.store = store
        self.registry = registry
        self.executor = executor
        self.settings = settings
        self.retry_delay = retry_delay
        self.metrics = metrics
        self.owner = new_id("wrk")
        self.claimed = 0  # items claimed since start, reported with each heartbeat
        self._running: dict[int, _Running] = {}
        # Items held in reserve, by batch, and those started in freed slots (promotions)
        # not yet recorded: they go with the next commit (a claim's or a flush's).
        self._reserves: dict[str, deque[ClaimedItem]] = {}
        self._promotions: list[Promotion] = []
        self._outcomes: list[Outcome] = []
        self._flushing: list[Outcome] = []
        self._claim_outcomes: list[Outcome] = []  # recorded by the claim in flight
        self._flush_lock = asyncio.Lock()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_due = False  # a flush for a full group is spawned and has not begun
        self._flush_retry_s = FLUSH_RETRY_MIN_S
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._loggers: dict[str, logging.Logger] = {}

    def wake(self) -> None:
        """Look for work now (called when this process accepted new items)."""
        self._wake.set()

    async def start(self) -> None:
        await self.store.subscribe_work(self.wake)
        now = self.clock()
        await self.store.heartbeat(
            owner=self.owner, now=now, lease_until=now + self.settings.lease_s,
            info={"host": socket.gethostname(), "pid": os.getpid()},
        )
        await self.catalog.sync()
        for coro in (self._claim_loop(), self._lease_loop(), self._reap_loop(),
                     self._cancel_loop()):
            self._tasks.append(asyncio.create_task(coro))
        if self.webhooks is not None:
            self._tasks.append(asyncio.create_task(self.webhooks.run()))

    async def stop(self, *, grace_s: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            # Bounded, and said: a loop that ignores its cancel must not keep the process
            # (and the outcomes still to be flushed below) from ending.
            _, stuck = await asyncio.wait(self._tasks, timeout=grace_s)
            if stuck:
                names = ", ".join(getattr(t.get_coro(), "__qualname__", "?") for t in stuck)
                log.warning("worker loops still running %.0f s after stop: %s", grace_s, names)
        pending = [r.task for r in self._running.values() if r.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        for r in list(self._running.values()):
            if r.task is not None and not r.task.done():
                r.task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._flush()
        held = [i.rowid for queue in self._reserves.values() for i in queue]
        self._reserves.clear()
        if held:
            await self._release(held)

    async def run_until_cancelled(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # claiming
    async def _claim_loop(self) -> None:
        s = self.settings
        idle_s = s.poll_interval_s
        low_water = max(1, s.worker_concurrency // 4)
        while not self._stopping:
            free = s.worker_concurrency - len(self._running)
            items: list[ClaimedItem] | None = None
            if free >= low_water or (free > 0 and not self._running):
                items = await self._claim(free)
            if items:
                try:
                    await self._dispatch(items)
                except Exception:
                    # Items not started stay leased to us and come back after the lease.
                    log.exception("dispatch failed")
                # More may be ready: a share another claimer skipped (SKIP LOCKED), the
                # next batch. Only a claim that found nothing waits for news.
                await asyncio.sleep(0)
                continue
            if items is None:  # did not claim, or failed to: news from now on
                self._wake.clear()
                self._slot_free.clear()
            waiters = [asyncio.ensure_future(self._wake.wait())]
            if self._running:
                waiters.append(asyncio.ensure_future(self._slot_free.wait()))
            _, rest = await asyncio.wait(
                waiters, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
            )
            for w in rest:
                w.cancel()

    async def _claim(self, limit: int) -> list[ClaimedItem] | None:
        """Claim up to ``limit`` items; None if the claim failed (the database comes back
        by itself: the loop tries again after a pause)."""
        # News from here on (a slot freed, work committed) is news to this claim: what
        # arrives while it runs makes the loop claim again at once.
        self._wake.clear()
        self._slot_free.clear()
        if any(o.status == ItemStatus.FAILED for o in self._flushing):
            # A failure being committed may stop its batch (fail fast, an error rate):
            # claim after it, not beside it (on PostgreSQL the two would race, and the
            # claim could start the batch's next item before the stop).
            async with self._flush_lock:
                pass
        # Outcomes waiting for the group commit go in the claim's transaction, recorded
        # before it claims: one commit instead of two, and no claim waits behind a flush.
        done = self._claim_outcomes = self._take_outcomes()
        promoted = self._take_promotions()
        reserve, adopt = self._reserve_plan()
        s = self.settings
        try:
            items = await self.store.claim_items(
                owner=self.owner, limit=limit, now=self.clock(), lease_s=s.lease_s,
                tenant_cap=s.tenant_max_running, freed=self._freed_slots(), finished=done,
                tasks=self.registry,  # only batches of tasks this worker has
                promotions=promoted, reserve=reserve, adopt=adopt,
            )
        except Exception as exc:
            if adopt:
                self._spawn(self._release(adopt))
            what = f"could not record {len(done)} outcomes and claim" if done else "claim failed"
            if isinstance(exc, errors.StoreError):
                log.warning("%s (%s); retrying", what, exc.message)
            else:  # the loop must outlive any one failure
                log.exception("%s; retrying", what)
            self._outcomes[:0] = done  # recorded by a later flush or claim
            self._promotions[:0] = promoted
            self._schedule_flush()
            return None
        finally:
            self._claim_outcomes = []
        self._void_refused(promoted)
        if adopt:
            leased = {i.rowid for i in items if not i.reserved}
            back = [rowid for rowid in adopt if rowid not in leased]
            if back:
                self._spawn(self._release(back))
        self._count_started(sum(1 for i in items if not i.reserved))
        if done and self.webhooks is not None:
            self.webhooks.wake()  # the outcomes' webhooks are in the outbox now
        return items

    def _freed_slots(self) -> FreedSlots:
        """The slots of finished items whose outcomes wait for the group commit: free to
        claim again (a slot is free when its handler returns, not when it is committed)."""
        if not self._outcomes and not self._flushing:
            return NO_FREED_SLOTS
        items: dict[str, list[int]] = {}
        tenants: dict[str, int] = {}
        running = self._running
        for flushing, pending in ((True, self._flushing), (False, self._outcomes)):
            for o in pending:
                if o.rowid in running or o.passed_on:  # leased to us again, or passed on
                    continue
                ids = items.get(o.batch_id)
                if ids is None:
                    ids = items[o.batch_id] = []
                ids.append(o.rowid)
                # A batch's room is counted again under its lock (exact); a tenant's is
                # not, so only outcomes no commit can have taken yet count for it.
                if not flushing:
                    tenants[o.tenant_id] = tenants.get(o.tenant_id, 0) + 1
        return FreedSlots(items, tenants)

    async def _dispatch(self, items: list[ClaimedItem]) -> None:
        """Start claimed items (those held in reserve wait for a freed slot); cheap sync
        (``inline``) handlers run right here."""
        budget_end = time.monotonic() + 0.02
        held: set[str] = set()
        for item in items:
            if item.reserved:
                self._reserves.setdefault(item.batch_id, deque()).append(item)
                held.add(item.batch_id)
                continue
            task = self._task_or_none(item.task, item.version)
            if task is not None and task.mode == "inline":
                started = self.clock()
                self._finish(item, self._run_inline(item, self._context(item)), started)
                if time.monotonic() > budget_end:
                    await asyncio.sleep(0)  # let the API breathe between long runs
                    budget_end = time.monotonic() + 0.02
                continue
            self._start(item)
        for batch_id in held:
            self._pass_freed_slots(batch_id)

    def _context(self, item: ClaimedItem) -> TaskContext:
        return TaskContext(
            item_id=item_public_id(item.rowid), batch_id=item.batch_id,
            attempt=item.attempts, runner=item.runner, logger=self._logger(item.task),
        )

    def _start(self, item: ClaimedItem) -> None:
        running = _Running(item=item, ctx=self._context(item))
        self._running[item.rowid] = running
        running.task = asyncio.create_task(self._run(running))

    # reserves
    def _reserve_plan(self) -> tuple[dict[str, int] | None, list[int]]:
        """How many more items of each batch to hold in reserve: as many as this worker
        runs of it (up to RESERVE_MAX), less those it holds. And the reserve of each
        batch it runs nothing of any more (no freed slot of its would start them), taken
        out for the claim to adopt: leased like any ready item, first in its batch's
        order; what the claim does not take is given back."""
        if not self._running and not self._reserves:
            return None, []
        adopt_all = not self._may_reserve()
        running: dict[str, int] = {}
        for r in self._running.values():
            running[r.item.batch_id] = running.get(r.item.batch_id, 0) + 1
        adopt = [i.rowid for b in [b for b in self._reserves if adopt_all or b not in running]
                 for i in self._reserves.pop(b)]
        if adopt_all:
            return None, adopt
        wanted = {b: min(n, RESERVE_MAX) - len(self._reserves.get(b, ()))
                  for b, n in running.items()}
        return {b: n for b, n in wanted.items() if n > 0} or None, adopt

    def _may_reserve(self) -> bool:
        """Whether freed slots may go straight to reserved items: only while this worker
        has room to spare (a worker at its concurrency hands each freed slot to the
        claim, which serves batches by priority and fair share) and no tenant cap is set
        (one tenant's batches share it through the claim)."""
        s = self.settings
        return (not s.tenant_max_running
                and s.worker_concurrency - len(self._running) >= max(1, s.worker_concurrency // 4))

    def _promote(self, batch_id: str, at: float) -> bool:
        """Start a reserved item of the batch in the slot just freed, at ``at``; whether
        there was one. Recorded with the next commit (:class:`Promotion`)."""
        queue = self._reserves.get(batch_id)
        if not queue or not self._may_reserve():
            return False
        item = queue.popleft()
        if not queue:
            del self._reserves[batch_id]
        item.reserved = False
        item.attempts += 1  # as the recording counts it
        self._promotions.append(Promotion(
            rowid=item.rowid, fence=item.fence, batch_id=item.batch_id,
            tenant_id=item.tenant_id, est_usd=item.est_usd, started_at=at))
        self._count_started(1)
        self._start(item)
        return True

    def _count_started(self, n: int) -> None:
        """Items taken to run (claimed, or started from the reserve): the heartbeat's
        count and the ``claimed`` metric."""
        self.claimed += n
        if self.metrics is not None and n:
            self.metrics.claimed.inc(n)

    def _pass_freed_slots(self, batch_id: str) -> None:
        """Reserved items that came after slots of their batch were freed start in those
        slots, while the outcomes that freed them still wait here: taken by no commit
        yet, so the batch counts those slots taken until the promotions are recorded."""
        for o in self._outcomes:
            if (o.batch_id == batch_id and o.status == ItemStatus.SUCCEEDED
                    and not o.passed_on and o.rowid not in self._running):
                if not self._promote(batch_id, self.clock()):
                    return
                o.passed_on = True

    def _take_promotions(self) -> list[Promotion]:
        taken, self._promotions = self._promotions, []
        return taken

    def _void_refused(self, promoted: list[Promotion]) -> None:
        """Promotions the database refused (the batch paused, stopped or cancelled; the
        reservation lost): their runs are void, stopped now; the batch's reserve goes."""
        for p in promoted:
            if not p.refused:
                continue
            self._drop_reserve(p.batch_id)
            running = self._running.get(p.rowid)
            if running is not None and not running.ctx.cancelled:
                running.ctx.cancel()
                if running.task is not None:
                    running.task.cancel()

    def _drop_reserve(self, batch_id: str) -> None:
        queue = self._reserves.pop(batch_id, None)
        if queue:
            self._spawn(self._release([i.rowid for i in queue]))

    async def _release(self, rowids: list[int]) -> None:
        try:
            await self.store.release_items(owner=self.owner, rowids=rowids)
        except Exception as exc:  # their leases run out instead: no longer renewed
            log.warning("could not give back %d reserved items (%s)", len(rowids), exc)

    def _logger(self, task: str) -> logging.Logger:
        logger = self._loggers.get(task)
        if logger is None:
            logger = self._loggers[task] = logging.getLogger(f"batchd.task.{task}")
        return logger

    def _task_or_none(self, name: str, version: str) -> TaskDef | None:
        try:
            return self.registry.get(name, version)
        except errors.NotFound:
            return None

    def _run_inline(self, item: ClaimedItem, ctx: TaskContext) -> Outcome:
        task = self.registry.get(item.task, item.version)
        try:
            outputs = _run_sync(task, outcomes.records(item), ctx)
        except RecordError as exc:
            return outcomes.failure(item, exc.as_dict(), final=True)
        except Exception as exc:
            error = {"code": "handler_error", "message": f"{type(exc).__name__}: {exc}"}
            return self._retry_or_fail(item, error)
        return outcomes.success(item, outputs, ctx)

    def _finish(self, item: ClaimedItem, outcome: Outcome, started: float) -> None:
        outcome.batch_id = item.batch_id
        outcome.tenant_id = item.tenant_id
        outcome.finished_at = outcome.finished_at or self.clock()
        outcome.compute_ms = (outcome.finished_at - started) * 1000.0
        if self.metrics is not None:
            self.metrics.observe(outcome, outcome.finished_at - started)
        self._add_outcome(outcome)

    async def _run(self, running: _Running) -> None:
        item, ctx = running.item, running.ctx
        started = self.clock()
        try:
            outcome = await self._attempt(item, ctx)
        except asyncio.CancelledError:
            if self._stopping and not ctx.cancelled:
                # Shutting down: hand the item back now rather than after its lease.
                outcome = Outcome(
                    rowid=item.rowid, fence=item.fence, status=ItemStatus.QUEUED,
                    error={"code": "worker_shutdown", "message": "worker stopped"},
                    retry_at=self.clock(),
                )
            else:
                outcome = outcomes.cancelled(item)
        finally:
            self._running.pop(item.rowid, None)
            self._slot_free.set()  # a claim may take the slot, or refill the reserve
        outcome.finished_at = outcome.finished_at or self.clock()
        if outcome.status == ItemStatus.SUCCEEDED and not self._stopping:
            # The slot goes straight to a reserved item of the batch, if one is held.
            # Only after a success: after a failure the next item waits for the claim
            # that records it (a fail-fast batch stops there; a retry goes by the claim).
            outcome.passed_on = self._promote(item.batch_id, outcome.finished_at)
        self._finish(item, outcome, started)
        if not self._running and not self._stopping:
            # Nothing else in flight could join the group: commit now, not after the
            # window, so the batch's freed slots can be claimed again at once.
            self._spawn(self._flush())

    async def _attempt(self, item: ClaimedItem, ctx: TaskContext) -> Outcome:
        try:
            task = await self.catalog.get(item.task, item.version)  # defined over the API too
        except errors.NotFound as exc:
            error = {"code": "unknown_task", "message": exc.message}
            return outcomes.failure(item, error, final=True)
        except errors.StoreError as exc:  # could not look the task up: not the item's fault
            return self._retry_or_fail(item, {"code": "store_unavailable", "message": exc.message})
        timeout = task.timeout_for(item.runner, item.item_timeout_s)
        try:
            # A timeout scope, not wait_for: no second task (and loop pass) per item.
            async with asyncio.timeout(timeout):
                outputs = await self.executor.run(task, outcomes.records(item), ctx)
        except TimeoutError:
            ctx.cancel()
            error = {"code": "timeout", "message": f"item timed out after {timeout} s"}
            return self._retry_or_fail(item, error)
        except asyncio.CancelledError:
            raise
        except RecordError as exc:
            return outcomes.failure(item, exc.as_dict(), final=True)
        except Exception as exc:
            error = {"code": "handler_error", "message": f"{type(exc).__name__}: {exc}"}
            return self._retry_or_fail(item, error)
        if ctx.cancelled:
            return outcomes.cancelled(item)
        return outcomes.success(item, outputs, ctx)

    def _retry_or_fail(self, item: ClaimedItem, error: dict[str, Any]) -> Outcome:
        if item.attempts < item.max_attempts:
            delay = self.retry_delay(
                item.attempts, base_s=item.retry_backoff_s,
                max_s=self.settings.retry_backoff_max_s,
            )
            return Outcome(
                rowid=item.rowid, fence=item.fence, status=ItemStatus.QUEUED, error=error,
                retry_at=self.clock() + delay,
            )
        return outcomes.failure(item, error, final=True)

    # committing
    def _add_outcome(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if len(self._outcomes) >= self.settings.commit_max_items:
            if not self._flush_due:  # one flush takes them all: never a task per outcome
                self._flush_due = True
                self._spawn(self._flush())
        elif (self._outcomes or self._promotions) and self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(
                self.settings.commit_interval_s, lambda: self._spawn(self._flush())
            )

    def _take_outcomes(self) -> list[Outcome]:
        """The oldest waiting outcomes, as many as one transaction records."""
        taken = self._outcomes[: self.settings.commit_max_items * 4]
        del self._outcomes[: len(taken)]
        return taken

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    async def _flush(self) -> None:
        async with self._flush_lock:
            self._flush_due = False
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
            while self._outcomes or self._promotions:
                batch = self._flushing = self._take_outcomes()
                promoted = self._take_promotions()
                try:
                    await self.store.finish_items(
                        batch, now=self.clock(), promotions=promoted, owner=self.owner,
                        lease_s=self.settings.lease_s)
                except Exception as exc:
                    # Keep them (their leases stay renewed) and try again shortly; a stale
                    # one is refused by its fencing token, so retrying is always safe, even
                    # when the failed attempt did commit.
                    if isinstance(exc, errors.StoreError):
                        log.warning("could not record %d outcomes (%s); retrying",
                                    len(batch), exc.message)
                    else:
                        log.exception("could not record %d outcomes; retrying", len(batch))
                    self._outcomes[:0] = batch
                    self._promotions[:0] = promoted
                    # Soon, and sooner than the leases run out once the database is back.
                    self._flush_handle = asyncio.get_running_loop().call_later(
                        self._flush_retry_s, lambda: self._spawn(self._flush())
                    )
                    self._flush_retry_s = min(self._flush_retry_s * 2, FLUSH_RETRY_MAX_S)
                    return
                finally:
                    self._flushing = []
                self._void_refused(promoted)
                self._flush_retry_s = FLUSH_RETRY_MIN_S
                if self.webhooks is not None:
                    self.webhooks.wake()  # the outcomes' webhooks are in the outbox now
            self._wake.set()

    # housekeeping
    async def _lease_loop(self) -> None:
        interval = max(0.05, self.settings.lease_s / 3)
        info = {"host": socket.gethostname(), "pid": os.getpid()}
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            tracked = [*self._running, *(o.rowid for o in (
                *self._outcomes, *self._flushing, *self._claim_outcomes)),
                *(i.rowid for queue in self._reserves.values() for i in queue)]
            try:
                await self.store.heartbeat(
                    owner=self.owner, now=now, lease_until=now + self.settings.lease_s,
                    info=info, item_ids=tracked, claimed=self.claimed,
                )
            except errors.BatchdError as exc:
                log.warning("heartbeat failed (%s)", exc.message)
            except Exception:  # a dead lease loop would let every lease run out
                log.exception("heartbeat failed")

    async def _reap_loop(self) -> None:
        while True:
            try:
                await self.store.reap(
                    now=self.clock(), retry_backoff_max_s=self.settings.retry_backoff_max_s,
                    staging_ttl_s=self.settings.staging_ttl_s,
                )
            except errors.BatchdError as exc:
                log.warning("reaper failed (%s)", exc.message)
            except Exception:  # the loop must outlive any one failure
                log.exception("reaper failed")
            await asyncio.sleep(self.settings.reap_interval_s)

    async def _cancel_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if not self._running:
                continue
            try:
                ids = await self.store.cancel_requests(owner=self.owner)
            except errors.BatchdError:
                continue  # asked again in a moment
            except Exception:
                log.exception("could not read cancel requests")
                continue
            for rowid in ids:
                running = self._running.get(rowid)
                if running is None or running.ctx.cancelled:
                    continue
                running.ctx.cancel()
                if running.task is not None:
                    running.task.cancel()
