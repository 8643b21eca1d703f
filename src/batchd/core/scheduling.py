"""Which batches a claim serves, and how many items each gets.

Order: priority (high first), then fair share: tenants with fewer running items
first, then batches with fewer running items, then the oldest batch. Within one
priority level capacity is dealt round-robin, so equal batches progress together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from itertools import groupby


@dataclass(slots=True)
class Candidate:
    batch_id: str
    tenant_id: str
    priority: int
    parallelism: int
    running: int
    created_at: float


def claim_plan(
    candidates: list[Candidate], *, limit: int, tenant_running: dict[str, int], tenant_cap: int
) -> Generator[tuple[Candidate, int], int, None]:
    """Yields ``(candidate, n)`` to claim up to n items from; send back how many were taken."""
    ordered = sorted(
        candidates,
        key=lambda c: (-c.priority, tenant_running.get(c.tenant_id, 0), c.running, c.created_at),
    )
    remaining = limit
    for _, level in groupby(ordered, key=lambda c: c.priority):
        pending = list(level)
        while remaining > 0 and pending:
            share = max(1, math.ceil(remaining / len(pending)))
            still_hungry = []
            for c in pending:
                room = c.parallelism - c.running
                if tenant_cap:
                    room = min(room, tenant_cap - tenant_running.get(c.tenant_id, 0))
                want = min(share, room, remaining)
                if want <= 0:
                    continue
                got = yield c, want
                c.running += got
                tenant_running[c.tenant_id] = tenant_running.get(c.tenant_id, 0) + got
                remaining -= got
                if got == want and room > got:
                    still_hungry.append(c)
                if remaining == 0:
                    break
            pending = still_hungry
        if remaining == 0:
            break


def plan_claims(
    candidates: list[Candidate],
    *,
    limit: int,
    tenant_running: dict[str, int],
    tenant_cap: int,
    take: Callable[[Candidate, int], int],
) -> int:
    """Deal ``limit`` slots over ``candidates``; ``take(c, n)`` claims up to n, returns how many.

    Returns the number of items claimed.
    """
    total = 0
    plan = claim_plan(
        candidates, limit=limit, tenant_running=tenant_running, tenant_cap=tenant_cap
    )
    try:
        c, want = next(plan)
        while True:
            got = take(c, want)
            total += got
            c, want = plan.send(got)
    except StopIteration:
        return total


def retry_delay_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Exponential backoff after the ``attempts``-th failed attempt."""
    return min(max_s, base_s * (2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class BudgetFit:
    """What a batch's budget lets a claim take: the first ``n`` ready items, in order."""

    n: int
    exhausted: bool  # the cap is reached for good: the batch stops as budget_exceeded


def budget_fit(
    est_usd: Sequence[float], *, budget_usd: float, actual_usd: float, reserved_usd: float,
    running: int,
) -> BudgetFit:
    """How many of the ready items (their estimates, in claim order) fit the budget's room.

    Nothing fitting ends the batch only when some item was ready to be refused and
    nothing in flight can free reservation; an item waiting for its retry is not
    refused by a claim that never saw it.
    """
    room = budget_usd - actual_usd - reserved_usd
    n = 0
    for est in est_usd:
        if est > room + 1e-12:
            break
        room -= est
        n += 1
    return BudgetFit(n=n, exhausted=n == 0 and running == 0 and len(est_usd) > 0)
