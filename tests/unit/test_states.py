"""The transition table and the terminal status of a drained batch."""

from __future__ import annotations

import pytest

from batchd.domain import states
from batchd.domain.states import BatchStatus, ItemStatus, StopReason, Tally


def tally(
    total: int, succeeded: int, failed: int = 0, cancelled: int = 0, *,
    records_total: int | None = None, records_failed: int | None = None,
) -> Tally:
    return Tally(
        total=total, succeeded=succeeded, failed=failed, cancelled=cancelled,
        records_total=total if records_total is None else records_total,
        records_failed=failed if records_failed is None else records_failed,
    )


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (ItemStatus.STAGED, ()),
        (ItemStatus.QUEUED, ("running", "staged")),
        (ItemStatus.RUNNING, ("queued",)),
        (ItemStatus.SUCCEEDED, ("running",)),
        (ItemStatus.FAILED, ("running",)),
        (ItemStatus.CANCELLED, ("queued", "running")),
    ],
)
def test_item_sources_follow_the_table(target: ItemStatus, sources: tuple[str, ...]) -> None:
    assert states.item_sources(target) == sources


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (BatchStatus.OPEN, ()),
        (BatchStatus.CLOSED, ("open",)),
        (BatchStatus.COMPLETED, ("closed", "open")),
        (BatchStatus.PARTIAL, ("closed",)),
        (BatchStatus.FAILED, ("closed",)),
        (BatchStatus.CANCELLED, ("closed", "open")),
        (BatchStatus.EXPIRED, ("closed", "open")),
    ],
)
def test_batch_sources_follow_the_table(target: BatchStatus, sources: tuple[str, ...]) -> None:
    assert states.batch_sources(target) == sources


def test_states_table_covers_every_state() -> None:
    assert set(states.ITEM_TRANSITIONS) == set(ItemStatus)
    assert set(states.BATCH_TRANSITIONS) == set(BatchStatus)


def test_states_terminal_ones_have_no_exit() -> None:
    for s in states.TERMINAL_ITEM:
        assert states.ITEM_TRANSITIONS[s] == frozenset()
    for b in BatchStatus:
        assert states.is_terminal(b) == (b not in states.ACTIVE_BATCH)
        assert (states.BATCH_TRANSITIONS[b] == frozenset()) == states.is_terminal(b)


def test_states_cancelled_item_never_runs_again() -> None:
    assert "cancelled" not in states.item_sources(ItemStatus.QUEUED)
    assert "cancelled" not in states.item_sources(ItemStatus.RUNNING)


@pytest.mark.parametrize(
    ("t", "stop_reason", "max_error_pct", "expected"),
    [
        (tally(0, 0), None, 100.0, BatchStatus.COMPLETED),
        (tally(4, 4), None, 100.0, BatchStatus.COMPLETED),
        (tally(4, 4), None, 0.0, BatchStatus.COMPLETED),
        (tally(4, 3, 1), None, 100.0, BatchStatus.PARTIAL),
        (tally(4, 0, 4), None, 100.0, BatchStatus.FAILED),
        (tally(4, 0, 0, 4), StopReason.BUDGET_EXCEEDED, 100.0, BatchStatus.FAILED),
        (tally(4, 2, 0, 2), StopReason.BUDGET_EXCEEDED, 100.0, BatchStatus.PARTIAL),
        (tally(4, 1, 1, 2), StopReason.FAIL_FAST, 100.0, BatchStatus.PARTIAL),
        (tally(4, 3, 1), None, 25.0, BatchStatus.PARTIAL),  # 25% is not above 25%
        (tally(4, 2, 2), None, 25.0, BatchStatus.FAILED),
        (tally(4, 4), StopReason.CANCELLED, 100.0, BatchStatus.CANCELLED),
        (tally(4, 0, 0, 4), StopReason.EXPIRED, 100.0, BatchStatus.EXPIRED),
        # failed records inside succeeded items count against completion and the rate
        (tally(2, 2, records_total=10, records_failed=1), None, 100.0, BatchStatus.PARTIAL),
        (tally(2, 2, records_total=10, records_failed=3), None, 20.0, BatchStatus.FAILED),
    ],
)
def test_final_status_over_tallies(
    t: Tally, stop_reason: str | None, max_error_pct: float, expected: BatchStatus
) -> None:
    assert states.final_status(t, stop_reason=stop_reason, max_error_pct=max_error_pct) == expected
