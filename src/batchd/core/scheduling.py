"""Which batches a claim serves, and how many items each gets.

A process claims only batches of tasks it can run (:func:`claimable`). Order:
priority (high first), then fair share: tenants with fewer running items first, then
batches with fewer running items, then the oldest batch. Within one priority level
capacity is dealt round-robin, so equal batches progress together.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby

from batchd.tasks.registry import TaskRegistry

# Kinds of task defined over the API that any process builds from their stored definition
# alone (a python-kind definition names a function only some processes may import).
DEFINED_ANYWHERE = ("http", "llm")


@dataclass(frozen=True, slots=True)
class Claimable:
    """The batches a process may claim from: those of a task ``(names[i], versions[i])``
    it has registered, and those of a task defined over the API of one of ``kinds``."""

    names: tuple[str, ...]
    versions: tuple[str, ...]
    kinds: tuple[str, ...] = DEFINED_ANYWHERE

    def covers(self, name: str, version: str, *, defined_kind: str | None = None) -> bool:
        """Whether a batch of task ``name`` at ``version`` is claimable (``defined_kind``:
        the kind of its definition over the API, if it has one)."""
        if defined_kind is not None and defined_kind in self.kinds:
            return True
        return any(n == name and v == version
                   for n, v in zip(self.names, self.versions, strict=True))


def claimable(registry: TaskRegistry) -> Claimable:
    """What a process whose tasks are ``registry`` claims: every task and version it has
    registered (its Python tasks and the definitions it has built), and the definitions
    any process can build. A batch of any other task is left to the processes that have
    it, never claimed and failed as an unknown task."""
    return _claimable(registry.keys())


@functools.lru_cache(maxsize=16)
def _claimable(keys: tuple[tuple[str, str], ...]) -> Claimable:
    return Claimable(names=tuple(k[0] for k in keys), versions=tuple(k[1] for k in keys))


@dataclass(slots=True)
class Candidate:
    """A batch with ready items and room to run more of them."""

    batch_id: str
    tenant_id: str
    priority: int
    parallelism: int
    running: int
    created_at: float
    budgeted: bool = False  # has a budget: each share's items must fit it (budget_fit)
    # Of ``running``, how many the claimer itself finished without committing yet: free
    # slots to it (``running`` already leaves them out).
    freed: int = 0


class ClaimPlan:
    """Deals a claim's ``limit`` slots over the candidate batches, one share at a time.

    Iterate it for ``(candidate, want)``: claim up to ``want`` items of that batch and
    report how many with :meth:`took` before the next share (none reported: none
    taken). The same loop serves a claim run as one transaction and one run as a
    transaction per batch.
    """

    def __init__(
        self, candidates: list[Candidate], *, limit: int, tenant_running: dict[str, int],
        tenant_cap: int,
    ) -> None:
        self.candidates = candidates
        self.limit = limit
        self.tenant_running = tenant_running
        self.tenant_cap = tenant_cap
        self.claimed = 0
        self._got = 0

    def took(self, n: int) -> None:
        """How many items the share just dealt was claimed with."""
        self._got = n

    def __iter__(self) -> Iterator[tuple[Candidate, int]]:
        ordered = sorted(self.candidates, key=lambda c: (
            -c.priority, self.tenant_running.get(c.tenant_id, 0), c.running, c.created_at))
        for _, level in groupby(ordered, key=lambda c: c.priority):
            pending = list(level)
            while self.claimed < self.limit and pending:
                pending = yield from self._deal_round(pending)
            if self.claimed >= self.limit:
                return

    def _deal_round(
        self, pending: list[Candidate]
    ) -> Generator[tuple[Candidate, int], None, list[Candidate]]:
        """One round-robin pass over ``pending``; returns the batches that took all they
        were dealt and have room for more."""
        share = max(1, math.ceil((self.limit - self.claimed) / len(pending)))
        still_hungry = []
        for c in pending:
            room = c.parallelism - c.running
            if self.tenant_cap:
                room = min(room, self.tenant_cap - self.tenant_running.get(c.tenant_id, 0))
            want = min(share, room, self.limit - self.claimed)
            if want <= 0:
                continue
            self._got = 0
            yield c, want
            got = self._got
            c.running += got
            self.tenant_running[c.tenant_id] = self.tenant_running.get(c.tenant_id, 0) + got
            self.claimed += got
            if got == want and room > got:
                still_hungry.append(c)
            if self.claimed >= self.limit:
                break
        return still_hungry


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
