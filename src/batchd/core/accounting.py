"""How an outcome moves a batch's counters (shared by every store backend)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from batchd.domain.models import Outcome, Promotion
from batchd.domain.states import ItemStatus, StopReason


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
    in_buffer_bytes: int = 0
    out_buffer_bytes: int = 0
    n_undelivered: int = 0
    r_undelivered: int = 0
    compute_ms: float = 0.0

    def add(
        self, outcome: Outcome, *, est_usd: float, n_records: int, size: int = 0,
        deliver: bool = False,
    ) -> None:
        """Count one outcome; ``size`` is the item's input bytes, ``deliver`` whether its
        result waits in the output buffer until taken."""
        self.n_running -= 1
        self.reserved_usd -= est_usd
        self.actual_usd += outcome.cost_usd
        self.tokens_in += outcome.tokens_in
        self.tokens_out += outcome.tokens_out
        self.compute_ms += outcome.compute_ms
        status = outcome.status
        if status != ItemStatus.QUEUED:
            self.in_buffer_bytes -= size  # the input leaves the buffer once settled
        if deliver and status in (ItemStatus.SUCCEEDED, ItemStatus.FAILED):
            self.n_undelivered += 1
            self.r_undelivered += n_records
            self.out_buffer_bytes += len(outcome.output or b"")
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


@dataclass(slots=True)
class LeasedItem:
    """An item an outcome is for, with its batch, as read inside the committing transaction."""

    id: int
    batch_id: str
    fence: int
    status: str
    cancel_requested: bool
    est_usd: float
    n_records: int
    stop_reason: str | None
    tenant_id: str
    size: int
    deliver: bool
    fail_fast: bool


@dataclass(slots=True)
class GroupCommit:
    """What one group commit writes, sorted out from the outcomes that still hold a lease."""

    deltas: dict[str, BatchDelta] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)
    # batches to stop as fail_fast: one of their items failed, and they were not stopped
    fail_fast: set[str] = field(default_factory=set)
    # (run_after, error, id, fence)
    retries: list[tuple[Any, ...]] = field(default_factory=list)
    # (status, error, usage, finished_at, compute_ms, id, fence)
    finals: list[tuple[Any, ...]] = field(default_factory=list)
    # The attempts that did not succeed, each kept in the item's history:
    # (outcome: retried | failed | cancelled, error, usage, ended_at, id, fence).
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    outputs: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return len(self.retries) + len(self.finals)

    def usage_by_tenant(self) -> dict[str, dict[str, float]]:
        usage: dict[str, dict[str, float]] = {}
        for batch_id, d in self.deltas.items():
            u = usage.setdefault(self.tenants[batch_id], dict.fromkeys(USAGE_METRICS, 0))
            u["items_processed"] += d.n_succeeded + d.n_failed + d.n_cancelled
            u["items_succeeded"] += d.n_succeeded
            u["items_failed"] += d.n_failed
            u["records_processed"] += d.r_succeeded + d.r_failed
            u["cost_usd"] += d.actual_usd
            u["tokens"] += d.tokens_in + d.tokens_out
        return usage


USAGE_METRICS = (
    "items_processed", "items_succeeded", "items_failed", "records_processed", "cost_usd",
    "tokens",
)


# An attempt that ended with the item queued to run again (its lease lost, or an error
# worth another try).
ATTEMPT_RETRIED = "retried"


def plan_group_commit(
    outcomes: list[Outcome], current: dict[int, LeasedItem], *, now: float
) -> GroupCommit:
    """Keep the outcomes whose fencing token still matches; settle cancels; count them.

    ``current`` is consumed: an applied outcome's item leaves it.
    """
    plan = GroupCommit()
    dumps = orjson.dumps
    for o in outcomes:
        row = current.get(o.rowid)
        if row is None or row.fence != o.fence or row.status != ItemStatus.RUNNING:
            continue  # lease lost: a newer attempt owns this item
        # Applied: a second outcome for the same item and fence must not count again,
        # while a stale one ahead of it (an older fence) has just been passed over.
        del current[o.rowid]
        batch_id, stop_reason = row.batch_id, row.stop_reason
        if row.cancel_requested:
            settle(o, cancel_reason=stop_reason or StopReason.CANCELLED)
        elif stop_reason and o.status == ItemStatus.QUEUED:
            # A stopped batch dispatches nothing more: an attempt it left running (a
            # cancel that spares running items) ends with it, never to be retried.
            settle(o, cancel_reason=stop_reason)
        if batch_id not in plan.deltas:
            plan.deltas[batch_id] = BatchDelta()
            plan.tenants[batch_id] = row.tenant_id
        plan.deltas[batch_id].add(
            o, est_usd=row.est_usd, n_records=row.n_records, size=row.size,
            # a cancelled batch has released its output buffer: nothing more goes in
            deliver=row.deliver and stop_reason != StopReason.CANCELLED,
        )
        if o.status == ItemStatus.FAILED and row.fail_fast and stop_reason is None:
            plan.fail_fast.add(batch_id)
        err = dumps(o.error) if o.error else None
        usage = (
            dumps({"tokens_in": o.tokens_in, "tokens_out": o.tokens_out, "cost_usd": o.cost_usd})
            if o.tokens_in or o.tokens_out or o.cost_usd
            else None
        )
        if o.status != ItemStatus.SUCCEEDED:  # a success is the item's own final attempt
            outcome = ATTEMPT_RETRIED if o.status == ItemStatus.QUEUED else o.status
            plan.attempts.append((outcome, err, usage, o.finished_at or now, o.rowid, o.fence))
        if o.status == ItemStatus.QUEUED:
            plan.retries.append((o.retry_at, err, o.rowid, o.fence))
            continue
        plan.finals.append(
            (o.status, err, usage, o.finished_at or now, o.compute_ms, o.rowid, o.fence)
        )
        if o.output is not None:
            plan.outputs.append((o.rowid, o.output))
    return plan


def count_promotions(plan: GroupCommit, promoted: list[Promotion]) -> None:
    """Count reserved items started in freed slots as claimed: running, no longer queued,
    their estimates reserved (as a claim counts its items)."""
    for p in promoted:
        delta = plan.deltas.get(p.batch_id)
        if delta is None:
            delta = plan.deltas[p.batch_id] = BatchDelta()
            plan.tenants[p.batch_id] = p.tenant_id
        delta.n_running += 1
        delta.n_queued -= 1
        delta.reserved_usd += p.est_usd
