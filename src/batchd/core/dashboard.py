"""What the dashboard reads, scoped exactly as the API's reads (core.access): the caller's
tenant, and its own batches unless its role sees the whole tenant's."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchd.core import access, actions, paging
from batchd.core.access import Access
from batchd.core.txn.dashboard import ItemLine
from batchd.domain import errors
from batchd.domain.models import Batch, Principal

if TYPE_CHECKING:
    from batchd.core.db import Database

# A batch's chart reads every finished item: above this many it is not drawn.
CHART_MAX_ITEMS = 200_000
CHART_SLOTS = 40
CLAIM_RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class BatchFilter:
    """The batch list's filters; ``search`` is a batch id or a text in its metadata."""

    status: str | None = None
    task: str | None = None
    since: float | None = None
    until: float | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True)
class Chart:
    """Outcomes per time slot: ``step_s`` seconds from ``t0``; per slot, the counts of
    succeeded, failed and cancelled items. ``skipped``: too many items to draw."""

    t0: float
    step_s: float
    slots: list[dict[str, int]] = field(default_factory=list)
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """A worker's items of the caller's batches: running now, and started in the last
    minute."""

    running: int
    started_last_minute: int


class Dashboard:
    def __init__(self, *, store: Database, access: Access, clock: Callable[[], float]) -> None:
        self.store = store
        self.access = access
        self.clock = clock

    async def batches(self, principal: Principal, f: BatchFilter, *, cursor: str | None,
                      limit: int) -> tuple[list[Batch], str | None]:
        search = (f.search or "").strip() or None
        if search is not None and search.startswith("bat_") and " " not in search:
            try:
                return [await self.access.batch(principal, search)], None
            except errors.NotFound:
                return [], None
        rows = await self.store.dashboard_batches(
            tenant_id=principal.tenant_id, owner=access.owner_scope(principal),
            status=f.status, task=f.task, since=f.since, until=f.until, search=search,
            before_pk=paging.decode_cursor(cursor, "b"), limit=limit + 1,
        )
        return paging.next_cursor(rows, limit, "b", "pk")

    async def items(self, principal: Principal, batch_id: str, *, status: str | None,
                    error_text: str | None, cursor: str | None,
                    limit: int) -> tuple[Batch, list[ItemLine], str | None]:
        batch = await self.access.batch(principal, batch_id)
        after = paging.decode_cursor(cursor, "s")
        text = (error_text or "").strip().lower() or None
        rows = await self.store.dashboard_items(
            unsuccessful=status in actions.RETRYABLE_ITEMS, pk=batch.pk, status=status,
            text=text, after_seq=-1 if after is None else after, limit=limit + 1,
        )
        page, nxt = paging.next_cursor(rows, limit, "s", "seq")
        return batch, page, nxt

    async def chart(self, batch: Batch) -> Chart:
        """``batch``'s outcomes over time (the caller has read ``batch`` through access)."""
        if batch.started_at is None:
            return Chart(t0=batch.created_at, step_s=1.0)
        if batch.n_total > CHART_MAX_ITEMS:
            return Chart(t0=batch.started_at, step_s=1.0, skipped=True)
        end = batch.finished_at or self.clock()
        step = max(1.0, math.ceil((end - batch.started_at) / CHART_SLOTS))
        rows = await self.store.outcomes_over_time(batch.pk, t0=batch.started_at, step=step)
        n = max([slot for slot, _, _ in rows] + [int((end - batch.started_at) // step)]) + 1
        slots = [{"succeeded": 0, "failed": 0, "cancelled": 0} for _ in range(max(n, 1))]
        for slot, status, count in rows:
            slots[max(0, slot)][status] += count
        return Chart(t0=batch.started_at, step_s=step, slots=slots)

    async def worker_load(self, principal: Principal) -> dict[str, WorkerLoad]:
        rows = await self.store.items_in_flight(
            principal.tenant_id, owner=access.owner_scope(principal),
            since=self.clock() - CLAIM_RATE_WINDOW_S)
        return {owner: WorkerLoad(n, recent) for owner, n, recent in rows if owner}


def chart_points(chart: Chart) -> dict[str, Any]:
    """The chart as the page draws it: per slot, throughput (items/s) and error rate (%)."""
    points = []
    for s in chart.slots:
        done = s["succeeded"] + s["failed"] + s["cancelled"]
        points.append({"rate": done / chart.step_s,
                       "error_pct": 100.0 * (s["failed"] / done) if done else 0.0})
    return {"points": points, "max_rate": max([p["rate"] for p in points] + [0.0])}
