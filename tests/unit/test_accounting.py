"""The group-commit plan (core/accounting.py): fencing, settling cancels, counting once."""

from __future__ import annotations

from typing import Any

import orjson

from batchd.core.accounting import LeasedItem, plan_group_commit
from batchd.domain.models import Outcome


def leased(rowid: int, **kw: Any) -> LeasedItem:
    fields: dict[str, Any] = {
        "id": rowid, "batch_id": "bat_a", "fence": 1, "status": "running",
        "cancel_requested": False, "est_usd": 0.1, "n_records": 2, "stop_reason": None,
        "tenant_id": "ten_a", "size": 10, "deliver": False, "fail_fast": False, **kw,
    }
    return LeasedItem(**fields)


def done(rowid: int, status: str = "succeeded", *, fence: int = 1, **kw: Any) -> Outcome:
    return Outcome(rowid=rowid, fence=fence, status=status, finished_at=5.0, **kw)


def test_group_commit_skips_outcomes_whose_fence_or_status_moved_on() -> None:
    current = {1: leased(1, fence=2), 2: leased(2, status="queued"), 3: leased(3)}

    plan = plan_group_commit([done(1), done(2), done(3), done(4)], current, now=9.0)

    assert plan.applied == 1
    assert [f[5] for f in plan.finals] == [3]
    assert plan.deltas["bat_a"].n_succeeded == 1


def test_group_commit_counts_a_repeated_outcome_once() -> None:
    plan = plan_group_commit([done(1), done(1)], {1: leased(1)}, now=9.0)

    assert plan.applied == 1
    d = plan.deltas["bat_a"]
    assert (d.n_running, d.n_succeeded, d.in_buffer_bytes) == (-1, 1, -10)


def test_group_commit_splits_retries_from_final_outcomes() -> None:
    current = {1: leased(1), 2: leased(2)}
    outcomes = [done(1, "queued", retry_at=20.0, error={"code": "x"}),
                done(2, output=b'{"ok":1}', tokens_in=3, cost_usd=0.5)]

    plan = plan_group_commit(outcomes, current, now=9.0)

    assert plan.retries == [(20.0, orjson.dumps({"code": "x"}), 1, 1)]
    [(status, _, usage, finished_at, _, rowid, fence)] = plan.finals
    assert (status, finished_at, rowid, fence) == ("succeeded", 5.0, 2, 1)
    assert orjson.loads(usage) == {"tokens_in": 3, "tokens_out": 0, "cost_usd": 0.5}
    assert plan.outputs == [(2, b'{"ok":1}')]
    d = plan.deltas["bat_a"]
    assert (d.n_queued, d.n_running, d.actual_usd) == (1, -2, 0.5)


def test_group_commit_settles_a_cancel_requested_item_as_cancelled() -> None:
    current = {1: leased(1, cancel_requested=True, stop_reason="budget_exceeded"),
               2: leased(2, cancel_requested=True)}

    plan = plan_group_commit([done(1, "failed"), done(2, "queued")], current, now=9.0)

    assert plan.retries == []
    assert [(f[0], orjson.loads(f[1])["code"]) for f in plan.finals] == [
        ("cancelled", "budget_exceeded"), ("cancelled", "cancelled")]


def test_group_commit_never_retries_in_a_stopped_batch() -> None:
    plan = plan_group_commit([done(1, "queued", retry_at=20.0)],
                             {1: leased(1, stop_reason="expired")}, now=9.0)

    assert plan.retries == []
    assert plan.finals[0][0] == "cancelled"


def test_group_commit_names_the_fail_fast_batches_to_stop() -> None:
    current = {
        1: leased(1, fail_fast=True), 2: leased(2, batch_id="bat_b", fail_fast=True),
        3: leased(3, batch_id="bat_c", fail_fast=True, stop_reason="fail_fast"),
        4: leased(4, batch_id="bat_d"),
    }
    outcomes = [done(1, "failed"), done(2), done(3, "failed"), done(4, "failed")]

    assert plan_group_commit(outcomes, current, now=9.0).fail_fast == {"bat_a"}


def test_group_commit_usage_is_summed_per_tenant() -> None:
    current = {1: leased(1), 2: leased(2, batch_id="bat_b"),
               3: leased(3, batch_id="bat_c", tenant_id="ten_b")}
    outcomes = [done(1, cost_usd=0.25, records_succeeded=2), done(2, "failed"), done(3)]

    usage = plan_group_commit(outcomes, current, now=9.0).usage_by_tenant()

    assert usage["ten_a"]["items_processed"] == 2
    assert usage["ten_a"]["items_failed"] == 1
    assert usage["ten_a"]["records_processed"] == 4
    assert usage["ten_a"]["cost_usd"] == 0.25
    assert usage["ten_b"]["items_succeeded"] == 1
