"""Item and batch states, and the one transition table the stores enforce."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchd.domain.models import Batch


class ItemStatus(StrEnum):
    STAGED = "staged"  # uploaded by a request that has not finished; invisible
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class StopReason(StrEnum):
    """Why a batch stopped dispatching before all items ran."""

    FAIL_FAST = "fail_fast"
    BUDGET_EXCEEDED = "budget_exceeded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


ITEM_TRANSITIONS: dict[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.STAGED: frozenset({ItemStatus.QUEUED}),
    ItemStatus.QUEUED: frozenset({ItemStatus.RUNNING, ItemStatus.CANCELLED}),
    ItemStatus.RUNNING: frozenset(
        {ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.QUEUED, ItemStatus.CANCELLED}
    ),
    ItemStatus.SUCCEEDED: frozenset(),
    ItemStatus.FAILED: frozenset(),
    ItemStatus.CANCELLED: frozenset(),
}

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.OPEN: frozenset(
        {BatchStatus.CLOSED, BatchStatus.CANCELLED, BatchStatus.EXPIRED, BatchStatus.COMPLETED}
    ),
    BatchStatus.CLOSED: frozenset(
        {
            BatchStatus.COMPLETED,
            BatchStatus.PARTIAL,
            BatchStatus.FAILED,
            BatchStatus.CANCELLED,
            BatchStatus.EXPIRED,
        }
    ),
    BatchStatus.COMPLETED: frozenset(),
    BatchStatus.PARTIAL: frozenset(),
    BatchStatus.FAILED: frozenset(),
    BatchStatus.CANCELLED: frozenset(),
    BatchStatus.EXPIRED: frozenset(),
}

# A person's retry (core.actions) is the one way out of an end state: it queues failed or
# cancelled items again, and a finished batch goes back to closed to finish again. Apart
# from the table above, whose end states the engine itself never leaves.
RETRY_ITEM_TRANSITIONS: dict[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.FAILED: frozenset({ItemStatus.QUEUED}),
    ItemStatus.CANCELLED: frozenset({ItemStatus.QUEUED}),
}
RETRY_BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.COMPLETED: frozenset({BatchStatus.CLOSED}),
    BatchStatus.PARTIAL: frozenset({BatchStatus.CLOSED}),
    BatchStatus.FAILED: frozenset({BatchStatus.CLOSED}),
}

ACTIVE_BATCH = (BatchStatus.OPEN, BatchStatus.CLOSED)
TERMINAL_ITEM = (ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.CANCELLED)


def item_sources(target: ItemStatus) -> tuple[str, ...]:
    """States an item may move to ``target`` from, for guarded updates."""
    return tuple(sorted(s.value for s, nxt in ITEM_TRANSITIONS.items() if target in nxt))


def batch_sources(target: BatchStatus) -> tuple[str, ...]:
    return tuple(sorted(s.value for s, nxt in BATCH_TRANSITIONS.items() if target in nxt))


def is_terminal(status: str) -> bool:
    return status not in (BatchStatus.OPEN, BatchStatus.CLOSED)


@dataclass(frozen=True, slots=True)
class Tally:
    """What a batch's counters say once nothing is queued or running."""

    total: int
    succeeded: int
    failed: int
    cancelled: int
    records_total: int
    records_failed: int


def final_status(tally: Tally, *, stop_reason: str | None, max_error_pct: float) -> BatchStatus:
    """The terminal status of a drained batch."""
    if stop_reason == StopReason.CANCELLED:
        return BatchStatus.CANCELLED
    if stop_reason == StopReason.EXPIRED:
        return BatchStatus.EXPIRED
    if tally.total == 0:
        return BatchStatus.COMPLETED
    if tally.succeeded == 0:
        return BatchStatus.FAILED
    if tally.records_total:
        error_pct = 100.0 * tally.records_failed / tally.records_total
        if error_pct > max_error_pct:
            return BatchStatus.FAILED
    if tally.succeeded == tally.total and tally.records_failed == 0:
        return BatchStatus.COMPLETED
    return BatchStatus.PARTIAL


class DisplayState(StrEnum):
    """What a batch is doing now, in one word for people (the CLI, ``display_status`` in
    the native API). ``BatchStatus`` says whether a batch still takes input (``open``)
    or not (``closed``); this says whether anything runs. Terminal batches show their
    final status."""

    OPEN = "open"  # accepting items; none waiting or running
    WAITING = "waiting"  # items wait for the batch's run_after
    QUEUED = "queued"  # items wait for a worker
    RUNNING = "running"  # items are running
    PAUSED = "paused"  # paused by a person, or waiting until results are taken (full buffer)
    STOPPING = "stopping"  # stopped early (fail-fast, budget): what runs finishes, no more
    FINISHING = "finishing"  # nothing left to run; the final status is being recorded
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


def display_state(b: Batch, *, now: float) -> DisplayState:
    """The one word a person is shown for ``b`` at ``now``."""
    if is_terminal(b.status):
        return DisplayState(b.status)
    if b.stop_reason:
        return DisplayState.STOPPING
    if b.paused_at is not None:
        return DisplayState.PAUSED
    if b.n_running:
        return DisplayState.RUNNING
    if b.n_queued:
        if output_full(b):
            return DisplayState.PAUSED
        return DisplayState.WAITING if b.run_after > now else DisplayState.QUEUED
    return DisplayState.OPEN if b.status == BatchStatus.OPEN else DisplayState.FINISHING


def output_full(b: Batch) -> bool:
    """Whether ``b``'s output buffer is full: dispatch waits until results are taken."""
    return b.max_output_bytes is not None and b.out_buffer_bytes >= b.max_output_bytes


def records_cancelled(b: Batch) -> int:
    """Records of ``b``'s cancelled items. Exact once nothing is queued or running (every
    record not succeeded or failed was cancelled); before that, each cancelled item counts
    as ``records_per_item`` records (a short last item may count a few too many)."""
    unsettled = max(0, b.r_total - b.r_succeeded - b.r_failed)
    if not b.n_queued and not b.n_running:
        return unsettled if b.n_cancelled else 0
    return min(unsettled, b.n_cancelled * b.records_per_item)
