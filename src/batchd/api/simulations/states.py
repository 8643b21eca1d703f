"""Engine states in the Simulations dialect's words, and its status filters."""

from __future__ import annotations

from dataclasses import dataclass

from batchd.domain import errors
from batchd.domain.states import BatchStatus, ItemStatus

ACTIVE = (BatchStatus.OPEN.value, BatchStatus.CLOSED.value)
TERMINAL_BATCH = {
    BatchStatus.COMPLETED: "COMPLETED",
    BatchStatus.PARTIAL: "PARTIAL",
    BatchStatus.FAILED: "FAILED",
    BatchStatus.CANCELLED: "CANCELLED",
    BatchStatus.EXPIRED: "FAILED",  # timed out; this dialect sets no expiry itself
}
JOB = {
    ItemStatus.STAGED: "PENDING",
    ItemStatus.QUEUED: "PENDING",
    ItemStatus.RUNNING: "RUNNING",
    ItemStatus.SUCCEEDED: "COMPLETED",
    ItemStatus.FAILED: "FAILED",
    ItemStatus.CANCELLED: "CANCELLED",
}
WIRE_STATUSES = ("PENDING", "RUNNING", "PARTIAL", "COMPLETED", "FAILED", "CANCELLED")


def batch_status(status: str, *, started: bool) -> str:
    """PENDING until the first job is dispatched, RUNNING until the batch ends."""
    if status in ACTIVE:
        return "RUNNING" if started else "PENDING"
    return TERMINAL_BATCH[BatchStatus(status)]


def job_status(status: str) -> str:
    return JOB[ItemStatus(status)]


@dataclass(frozen=True, slots=True)
class Filter:
    statuses: tuple[str, ...]
    started: bool | None = None


FILTERS = {
    "PENDING": Filter(ACTIVE, started=False),
    "RUNNING": Filter(ACTIVE, started=True),
    "PARTIAL": Filter((BatchStatus.PARTIAL.value,)),
    "COMPLETED": Filter((BatchStatus.COMPLETED.value,)),
    "FAILED": Filter((BatchStatus.FAILED.value, BatchStatus.EXPIRED.value)),
    "CANCELLED": Filter((BatchStatus.CANCELLED.value,)),
}


def parse_filter(value: str) -> Filter:
    """The engine filter for a wire status, in any letter case."""
    found = FILTERS.get(value.strip().upper())
    if found is None:
        raise errors.InvalidInput(
            f"status: unknown status {value!r}; use one of {', '.join(WIRE_STATUSES)}"
        )
    return found
