"""How an outcome moves a batch's counters (shared by every store backend)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from batchd.core.models import Outcome
from batchd.core.states import ItemStatus


@dataclass(slots=True)
class BatchDelta:
    n_queued: int = 0
    n_running: int = 0
    n_succeeded: int = 0
    n_failed: int = 0
    n_cancelled: int = 0
    r_succeeded: int = 0
    r_failed: int = 0
    reserved_usd: float = 0.0
    actual_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    out_bytes: int = 0

    def add(self, outcome: Outcome, *, est_usd: float, n_records: int) -> None:
        self.n_running -= 1
        self.reserved_usd -= est_usd
        self.actual_usd += outcome.cost_usd
        self.tokens_in += outcome.tokens_in
        self.tokens_out += outcome.tokens_out
        status = outcome.status
        if status == ItemStatus.QUEUED:
            self.n_queued += 1
        elif status == ItemStatus.SUCCEEDED:
            self.n_succeeded += 1
            self.r_succeeded += outcome.records_succeeded
            self.r_failed += outcome.records_failed
            self.out_bytes += len(outcome.output or b"")
        elif status == ItemStatus.FAILED:
            self.n_failed += 1
            self.r_failed += n_records
        else:
            self.n_cancelled += 1

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def values(self) -> list[float | int]:
        return [getattr(self, f) for f in self.columns()]


def settle(outcome: Outcome, *, cancel_reason: str | None) -> Outcome:
    """A cancelled item keeps a finished result but is never retried or failed."""
    if cancel_reason and outcome.status != ItemStatus.SUCCEEDED:
        outcome.status = ItemStatus.CANCELLED
        outcome.error = cancelled_error(cancel_reason)
    return outcome


def cancelled_error(reason: str) -> dict[str, str]:
    return {"code": reason, "message": f"cancelled: {reason.replace('_', ' ')}"}
