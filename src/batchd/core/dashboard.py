"""What the dashboard reads, scoped exactly as the API's reads (core.access): the caller's
tenant, and its own batches unless its role sees the whole tenant's. An operator (who
manages every tenant) picks the tenant whose batches it lists, and sees each batch as one
of that batch's tenant."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchd.core import access, actions, paging, roles
from batchd.core.access import Access
from batchd.core.txn.dashboard import Attempt, ItemLine, WorkerClaims
from batchd.domain import errors
from batchd.domain.models import Batch, Item, Principal

if TYPE_CHECKING:
    from batchd.core.browse import Browse
    from batchd.core.db import Database

# A batch's chart reads every finished item: above this many it is not drawn.
CHART_MAX_ITEMS = 200_000
CHART_SLOTS = 40
CLAIM_RATE_WINDOW_S = 60.0
MAX_ATTEMPTS_SHOWN = 100
MAX_TENANTS_SHOWN = 1000


@dataclass(frozen=True, slots=True)
class BatchFilter:
    """The batch list's filters; ``search`` is a batch id or a text in its metadata;
    ``tenant`` a tenant's name (an operator's filter: others see their own alone)."""

    status: str | None = None
    task: str | None = None
    dialect: str | None = None
    since: float | None = None
    until: float | None = None
    search: str | None = None
    tenant: str | None = None


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
    minute; and (for an operator) the items it claimed per second of every tenant, over
    its last heartbeat interval (None: not known yet)."""

    running: int = 0
    started_last_minute: int = 0
    claim_rate: float | None = None


def claim_rate(c: WorkerClaims) -> float | None:
    """Items claimed per second between a worker's last two heartbeats."""
    if c.before_at is None or c.at <= c.before_at:
        return None
    return max(0, c.claimed - c.claimed_before) / (c.at - c.before_at)


class Dashboard:
    def __init__(self, *, store: Database, access: Access, browse: Browse,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.access = access
        self.browse = browse
        self.clock = clock

    async def as_tenant(self, principal: Principal, tenant: str | None) -> Principal:
        """``principal`` reading the tenant named ``tenant`` (None: its own): an operator
        may name any tenant; anyone else only its own."""
        if not tenant or tenant == principal.tenant_name:
            return principal
        roles.require_operator(principal, "another tenant's batches")
        found = await self.store.get_tenant(tenant)
        if found is None:
            raise errors.NotFound(f"tenant {tenant} not found")
        return dataclasses.replace(principal, tenant_id=found.id, tenant_name=found.name)

    async def for_batch(self, principal: Principal, batch_id: str) -> Principal:
        """``principal`` as it reads and acts on ``batch_id``: an operator in the batch's
        tenant, anyone else as it is (access then finds the batch, or not)."""
        if not roles.is_operator(principal):
            return principal
        found = await self.store.tenant_of_batch(batch_id)
        if found is None or found[0] == principal.tenant_id:
            return principal
        return dataclasses.replace(principal, tenant_id=found[0], tenant_name=found[1])

    async def tenants(self, principal: Principal) -> list[str]:
        """The names of the tenants ``principal`` may list (an operator's choice)."""
        if not roles.is_operator(principal):
            return []
        return [name for _, name in await self.store.tenants(limit=MAX_TENANTS_SHOWN)]

    async def batches(self, principal: Principal, f: BatchFilter, *, cursor: str | None,
                      limit: int) -> tuple[list[Batch], str | None]:
        reader = await self.as_tenant(principal, f.tenant)
        return await self.browse.list_batches(
            reader, status=f.status, task=f.task, dialect=f.dialect, since=f.since,
            until=f.until, search=f.search, cursor=cursor, limit=limit)

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

    async def attempts(self, item: Item) -> list[Attempt]:
        """Every attempt of ``item`` (the caller has read it through access), oldest first:
        those recorded as they ended without success, then the one the item holds, if it
        is running or succeeded (an attempt that failed for good is recorded already)."""
        found = await self.store.item_attempts(item.rowid, limit=MAX_ATTEMPTS_SHOWN)
        if item.status in ("running", "succeeded") and item.attempts:
            found.append(Attempt(attempt=item.attempts, outcome=item.status, error=item.error,
                                 usage=item.usage, worker=None, started_at=item.started_at,
                                 ended_at=item.finished_at))
        return found

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
        """Per worker: its items of the batches ``principal`` may see, and for an operator
        its claim rate (of every tenant's items: only the operator sees them all)."""
        now = self.clock()
        rows = await self.store.items_in_flight(
            principal.tenant_id, owner=access.owner_scope(principal),
            since=now - CLAIM_RATE_WINDOW_S)
        load = {owner: WorkerLoad(n, recent) for owner, n, recent in rows if owner}
        if roles.is_operator(principal):
            for c in await self.store.worker_claims(since=now - CLAIM_RATE_WINDOW_S):
                load[c.worker] = dataclasses.replace(load.get(c.worker, WorkerLoad()),
                                                     claim_rate=claim_rate(c))
        return load


def chart_points(chart: Chart) -> dict[str, Any]:
    """The chart as the page draws it: per slot, items finished, throughput (items/s)
    and error rate (%)."""
    points = []
    for s in chart.slots:
        done = s["succeeded"] + s["failed"] + s["cancelled"]
        points.append({"done": done, "rate": done / chart.step_s,
                       "error_pct": 100.0 * (s["failed"] / done) if done else 0.0})
    return {"points": points, "max_rate": max([p["rate"] for p in points] + [0.0])}
