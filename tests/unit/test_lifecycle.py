"""The pure lifecycle decisions: stop target and finish verdict."""

from __future__ import annotations

import dataclasses

import pytest

from batchd.core import lifecycle
from batchd.domain.states import BatchStatus, StopReason

IDLE_CLOSED = lifecycle.FinishRow(
    finished_at=None, staging=False, status="closed", n_queued=0, n_running=0, n_total=4,
    n_succeeded=4, n_failed=0, n_cancelled=0, r_total=4, r_failed=0, stop_reason=None,
    max_error_pct=100.0,
)


@pytest.mark.parametrize(
    ("reason", "status", "sources"),
    [
        (StopReason.CANCELLED, BatchStatus.CANCELLED, ("closed", "open")),
        (StopReason.EXPIRED, BatchStatus.EXPIRED, ("closed", "open")),
        (StopReason.FAIL_FAST, BatchStatus.CLOSED, ("open", "closed")),
        (StopReason.BUDGET_EXCEEDED, BatchStatus.CLOSED, ("open", "closed")),
    ],
)
def test_stop_target_by_reason(reason: str, status: BatchStatus, sources: tuple[str, ...]) -> None:
    target = lifecycle.stop_target(reason)
    assert target.status == status
    assert target.sources == sources


@pytest.mark.parametrize(
    ("change", "verdict"),
    [
        ({}, BatchStatus.COMPLETED),
        ({"n_succeeded": 3, "n_failed": 1}, BatchStatus.PARTIAL),
        ({"n_succeeded": 0, "n_failed": 4}, BatchStatus.FAILED),
        ({"status": "open"}, None),
        ({"n_running": 1}, None),
        ({"n_queued": 1}, None),
        ({"finished_at": 1.0}, None),
        ({"staging": True}, None),
    ],
)
def test_finish_verdict(change: dict[str, object], verdict: BatchStatus | None) -> None:
    assert lifecycle.finish_verdict(dataclasses.replace(IDLE_CLOSED, **change)) == verdict


def test_finish_sources_let_a_cancelled_batch_be_dated() -> None:
    assert "cancelled" in lifecycle.finish_sources(BatchStatus.CANCELLED)
    assert "closed" in lifecycle.finish_sources(BatchStatus.PARTIAL)
