"""The one word a batch is shown as (``display_status``), and its cancelled records."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from batchd.domain import states
from batchd.domain.models import Batch
from batchd.domain.states import DisplayState

NOW = 1_700_000_000.0


def batch(**fields: Any) -> Batch:
    base: dict[str, Any] = dict(
        pk=1, id="bat_1", tenant_id="t", owner="o", task="echo", version="1", runner=None,
        status="closed", stop_reason=None, records_per_item=1, priority=50, parallelism=None,
        fail_fast=False, max_error_pct=100.0, budget_usd=None, run_after=0.0,
        item_timeout_s=None, max_attempts=3, expires_at=None, metadata={}, error=None,
        n_total=0, n_queued=0, n_running=0, n_succeeded=0, n_failed=0, n_cancelled=0,
        r_total=0, r_succeeded=0, r_failed=0, est_usd=0.0, reserved_usd=0.0, actual_usd=0.0,
        tokens_in=0, tokens_out=0, in_bytes=0, out_bytes=0, created_at=NOW, started_at=None,
        closed_at=None, finished_at=None,
    )
    return Batch(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"status": "open"}, DisplayState.OPEN),
        ({"status": "open", "n_queued": 2}, DisplayState.QUEUED),
        ({"status": "open", "n_running": 1, "n_queued": 2}, DisplayState.RUNNING),
        ({"n_queued": 3}, DisplayState.QUEUED),
        ({"n_queued": 3, "run_after": NOW + 60}, DisplayState.WAITING),
        ({"n_queued": 3, "run_after": NOW - 60}, DisplayState.QUEUED),
        ({"n_queued": 3, "n_running": 2}, DisplayState.RUNNING),
        ({"n_queued": 3, "max_output_bytes": 100, "out_buffer_bytes": 100},
         DisplayState.PAUSED),
        ({"n_queued": 3, "max_output_bytes": 100, "out_buffer_bytes": 99},
         DisplayState.QUEUED),
        ({"n_queued": 3, "n_running": 1, "max_output_bytes": 100, "out_buffer_bytes": 100},
         DisplayState.RUNNING),  # what runs, runs; nothing more starts
        ({"n_queued": 3, "paused_at": NOW - 5}, DisplayState.PAUSED),  # paused by a person
        ({"n_queued": 3, "n_running": 1, "paused_at": NOW - 5}, DisplayState.PAUSED),
        ({"stop_reason": "budget_exceeded", "n_running": 2}, DisplayState.STOPPING),
        ({"stop_reason": "fail_fast", "n_running": 1}, DisplayState.STOPPING),
        ({}, DisplayState.FINISHING),
        ({"status": "completed"}, DisplayState.COMPLETED),
        ({"status": "partial", "stop_reason": "budget_exceeded"}, DisplayState.PARTIAL),
        ({"status": "cancelled", "stop_reason": "cancelled", "n_running": 1},
         DisplayState.CANCELLED),  # ended at once; a running item settles later
        ({"status": "expired"}, DisplayState.EXPIRED),
        ({"status": "failed"}, DisplayState.FAILED),
    ],
)
def test_display_state_of_each_situation(fields: dict[str, Any], shown: DisplayState) -> None:
    assert states.display_state(batch(**fields), now=NOW) is shown


def test_display_state_covers_every_terminal_status() -> None:
    for status in states.BatchStatus:
        if states.is_terminal(status):
            assert states.display_state(batch(status=status.value), now=NOW) == status.value


def test_records_cancelled_exact_once_drained() -> None:
    drained = batch(status="partial", records_per_item=100, n_total=5, n_succeeded=2,
                    n_cancelled=3, r_total=450, r_succeeded=200)
    assert states.records_cancelled(drained) == 250  # a short last item counted exactly
    assert states.records_cancelled(replace(drained, n_cancelled=0, r_succeeded=450)) == 0


def test_records_cancelled_while_items_run_counts_records_per_item() -> None:
    running = batch(records_per_item=100, n_total=5, n_running=1, n_cancelled=2,
                    r_total=450, r_succeeded=150)
    assert states.records_cancelled(running) == 200
    # never more than the records not yet settled
    assert states.records_cancelled(replace(running, n_cancelled=4)) == 300
