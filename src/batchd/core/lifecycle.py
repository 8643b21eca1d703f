"""Pure decisions of a batch's life: what a stop moves it to, when and how it finishes."""

from __future__ import annotations

from dataclasses import dataclass

from batchd.core.scheduling import retry_delay_s
from batchd.domain import states
from batchd.domain.models import Outcome
from batchd.domain.states import BatchStatus, ItemStatus, StopReason


@dataclass(frozen=True, slots=True)
class StopTarget:
    """Where a stop moves a batch, and the states it may move from."""

    status: BatchStatus
    sources: tuple[str, ...]


def stop_target(reason: str) -> StopTarget:
    """Cancel and expiry end the batch at once; fail-fast and budget close it, and it ends
    ``partial`` or ``failed`` once what runs has drained (a closed batch may be stopped too:
    it records why it ends early)."""
    if reason == StopReason.CANCELLED:
        target = BatchStatus.CANCELLED
    elif reason == StopReason.EXPIRED:
        target = BatchStatus.EXPIRED
    else:
        target = BatchStatus.CLOSED
    sources = states.batch_sources(target)
    if target == BatchStatus.CLOSED:
        sources = (*sources, BatchStatus.CLOSED.value)
    return StopTarget(target, sources)


def stop_error(reason: str, detail: str | None) -> dict[str, str]:
    return {"code": reason, "message": detail or reason.replace("_", " ")}


@dataclass(frozen=True, slots=True)
class FinishRow:
    """A batch's counters, read to decide whether it has finished."""

    finished_at: float | None
    staging: bool
    status: str
    n_queued: int
    n_running: int
    n_total: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int
    r_total: int
    r_failed: int
    stop_reason: str | None
    max_error_pct: float


def finish_verdict(b: FinishRow) -> BatchStatus | None:
    """The batch's final status if it has just finished (closed, nothing queued or
    running, not finished already), else None."""
    if b.finished_at is not None or b.staging or b.status == BatchStatus.OPEN:
        return None
    if b.n_queued or b.n_running:
        return None
    return states.final_status(
        states.Tally(total=b.n_total, succeeded=b.n_succeeded, failed=b.n_failed,
                     cancelled=b.n_cancelled, records_total=b.r_total,
                     records_failed=b.r_failed),
        stop_reason=b.stop_reason, max_error_pct=b.max_error_pct,
    )


def finish_sources(verdict: BatchStatus) -> tuple[str, ...]:
    """The states a finishing batch may be in: those that lead to its verdict, or the verdict
    itself (a cancelled or expired batch has its status already; finishing dates it)."""
    return (*states.batch_sources(verdict), verdict.value)


def lease_expiry(
    rowid: int, fence: int, *, attempts: int, max_attempts: int, retry_backoff_s: float,
    retry_backoff_max_s: float, now: float,
) -> Outcome:
    """The outcome of an attempt whose worker stopped renewing its lease: the item runs
    again after its retry backoff, or fails once it has had ``max_attempts``."""
    lost = {"code": "lease_expired", "message": "the worker running this item stopped"}
    if attempts >= max_attempts:
        return Outcome(rowid=rowid, fence=fence, status=ItemStatus.FAILED.value, error=lost)
    delay = retry_delay_s(attempts, base_s=retry_backoff_s, max_s=retry_backoff_max_s)
    return Outcome(rowid=rowid, fence=fence, status=ItemStatus.QUEUED.value, error=lost,
                   retry_at=now + delay)
