"""Which batches a claim serves, and the retry backoff."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from batchd.core import scheduling
from batchd.core.scheduling import Candidate, ClaimPlan, retry_delay_s

MakeCandidate = Callable[..., Candidate]


@pytest.fixture
def candidate() -> MakeCandidate:
    """Factory: a batch with defaults that make it neutral in every ordering rule."""

    def make(
        batch_id: str, *, tenant: str = "acme", priority: int = 50, parallelism: int = 64,
        running: int = 0, created_at: float = 0.0,
    ) -> Candidate:
        return Candidate(
            batch_id=batch_id, tenant_id=tenant, priority=priority, parallelism=parallelism,
            running=running, created_at=created_at,
        )

    return make


class Queue:
    """``take`` over a number of ready items per batch, logging each call."""

    def __init__(self, ready: dict[str, int]) -> None:
        self.ready = dict(ready)
        self.calls: list[tuple[str, int]] = []
        self.taken: Counter[str] = Counter()

    def take(self, c: Candidate, want: int) -> int:
        got = min(want, self.ready.get(c.batch_id, 0))
        self.ready[c.batch_id] = self.ready.get(c.batch_id, 0) - got
        self.calls.append((c.batch_id, want))
        self.taken[c.batch_id] += got
        return got


def plan(
    candidates: list[Candidate], queue: Queue, *, limit: int,
    tenant_running: dict[str, int] | None = None, tenant_cap: int = 0,
) -> int:
    deal = ClaimPlan(candidates, limit=limit, tenant_running=dict(tenant_running or {}),
                     tenant_cap=tenant_cap)
    for c, want in deal:
        deal.took(queue.take(c, want))
    return deal.claimed


def test_scheduling_serves_higher_priority_first(candidate: MakeCandidate) -> None:
    q = Queue({"low": 10, "high": 3})

    n = plan([candidate("low", priority=1), candidate("high", priority=9)], q, limit=5)

    assert n == 5
    assert q.calls[0][0] == "high"
    assert q.taken == {"high": 3, "low": 2}


def test_scheduling_low_priority_waits_while_high_fills_limit(candidate: MakeCandidate) -> None:
    q = Queue({"low": 10, "high": 10})

    plan([candidate("low", priority=1), candidate("high", priority=9)], q, limit=4)

    assert q.taken == {"high": 4}


def test_scheduling_shares_equal_priority_round_robin(candidate: MakeCandidate) -> None:
    q = Queue({"a": 10, "b": 10})

    plan([candidate("a"), candidate("b")], q, limit=4)

    assert q.taken == {"a": 2, "b": 2}


def test_scheduling_gives_a_single_slot_to_the_least_running(candidate: MakeCandidate) -> None:
    q = Queue({"busy": 10, "idle": 10})

    plan([candidate("busy", running=5), candidate("idle", running=0)], q, limit=1)

    assert q.taken == {"idle": 1}


def test_scheduling_breaks_ties_by_age(candidate: MakeCandidate) -> None:
    q = Queue({"new": 10, "old": 10})

    plan([candidate("new", created_at=2.0), candidate("old", created_at=1.0)], q, limit=1)

    assert q.taken == {"old": 1}


def test_scheduling_prefers_tenant_with_fewer_running(candidate: MakeCandidate) -> None:
    q = Queue({"a1": 10, "b1": 10})

    plan(
        [candidate("a1", tenant="a"), candidate("b1", tenant="b")], q, limit=1,
        tenant_running={"a": 7, "b": 1},
    )

    assert q.taken == {"b1": 1}


def test_scheduling_redeals_what_a_short_batch_leaves(candidate: MakeCandidate) -> None:
    q = Queue({"short": 1, "long": 10})

    n = plan([candidate("short"), candidate("long", created_at=1.0)], q, limit=6)

    assert n == 6
    assert q.taken == {"short": 1, "long": 5}


def test_scheduling_respects_parallelism(candidate: MakeCandidate) -> None:
    q = Queue({"a": 10, "b": 10})

    n = plan([candidate("a", parallelism=3, running=1), candidate("b", parallelism=2)], q, limit=10)

    assert n == 4
    assert q.taken == {"a": 2, "b": 2}
    assert sorted(q.calls) == [("a", 2), ("b", 2)]  # each asked for no more than its room


def test_scheduling_respects_tenant_cap(candidate: MakeCandidate) -> None:
    q = Queue({"a1": 10, "a2": 10, "b1": 10})
    cands = [candidate("a1", tenant="a"), candidate("a2", tenant="a"), candidate("b1", tenant="b")]

    n = plan(cands, q, limit=20, tenant_running={"a": 1}, tenant_cap=4)

    assert n == 7
    assert q.taken["a1"] + q.taken["a2"] == 3
    assert q.taken["b1"] == 4


def test_scheduling_tenant_at_cap_gets_nothing(candidate: MakeCandidate) -> None:
    q = Queue({"a1": 10})

    n = plan([candidate("a1", tenant="a")], q, limit=5, tenant_running={"a": 5}, tenant_cap=5)

    assert n == 0
    assert q.calls == []


def test_scheduling_zero_cap_means_unlimited(candidate: MakeCandidate) -> None:
    q = Queue({"a1": 10})

    assert plan([candidate("a1")], q, limit=8, tenant_running={"acme": 100}, tenant_cap=0) == 8


def test_scheduling_nothing_to_do(candidate: MakeCandidate) -> None:
    q = Queue({"a": 0})

    assert plan([], q, limit=5) == 0
    assert plan([candidate("a")], q, limit=0) == 0
    assert plan([candidate("a")], q, limit=5) == 0


def test_retry_delay_doubles_per_attempt() -> None:
    assert [retry_delay_s(n, base_s=1.0, max_s=1000) for n in (1, 2, 3, 4, 5)] == [
        1.0, 2.0, 4.0, 8.0, 16.0,
    ]
    assert retry_delay_s(0, base_s=0.5, max_s=1000) == 0.5


def test_retry_delay_is_capped() -> None:
    assert retry_delay_s(4, base_s=1.0, max_s=5.0) == 5.0
    assert retry_delay_s(60, base_s=1.0, max_s=300.0) == 300.0
    assert retry_delay_s(3, base_s=0.0, max_s=300.0) == 0.0


def test_budget_fit_takes_the_ready_items_the_room_allows_in_order() -> None:
    fit = scheduling.budget_fit([0.1, 0.15, 0.05], budget_usd=0.25, actual_usd=0.0,
                                reserved_usd=0.0, running=0)
    assert fit == scheduling.BudgetFit(n=2, exhausted=False)  # exactly the room
    fit = scheduling.budget_fit([0.1, 0.2, 0.05], budget_usd=0.25, actual_usd=0.0,
                                reserved_usd=0.0, running=0)
    assert fit == scheduling.BudgetFit(n=1, exhausted=False)  # in order: 0.05 waits its turn


def test_budget_fit_is_exhausted_only_when_a_ready_item_is_refused_with_nothing_running() -> None:
    def fit(ready: list[float], running: int) -> scheduling.BudgetFit:
        return scheduling.budget_fit(ready, budget_usd=1.0, actual_usd=0.7, reserved_usd=0.25,
                                     running=running)

    assert fit([0.1], running=0) == scheduling.BudgetFit(n=0, exhausted=True)
    assert fit([0.1], running=1) == scheduling.BudgetFit(n=0, exhausted=False)
    assert fit([], running=0) == scheduling.BudgetFit(n=0, exhausted=False)  # all waiting


def test_claim_plan_counts_a_share_not_reported_as_taken_as_none(
    candidate: MakeCandidate,
) -> None:
    deal = scheduling.ClaimPlan([candidate("a"), candidate("b")], limit=4, tenant_running={},
                                tenant_cap=0)
    shares = []
    for c, want in deal:
        shares.append((c.batch_id, want))
        if c.batch_id == "b":
            deal.took(want)

    # a reported nothing: it is not dealt again, and b takes what a left.
    assert shares == [("a", 2), ("b", 2), ("b", 2)]
    assert deal.claimed == 4
    assert deal.tenant_running == {"acme": 4}
