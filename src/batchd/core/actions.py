"""Operator actions on a batch: retry the failed or cancelled items that match a filter,
pause and resume its dispatch. Pure decisions here; :mod:`batchd.core.txn.actions` runs
them in one transaction on either backend; :class:`Actions` checks who may act.

A retry queues the matching items again with fresh attempts and undoes the batch's end:
a finished batch (completed, partial, failed) goes back to ``closed`` and finishes again
once they have run; a fail-fast or budget stop is lifted. A cancel is final: a cancelled
(or expired) batch is not retried, so a retry racing a cancel leaves either the cancelled
batch untouched (the cancel came first) or the retried items cancelled with it (the
retry came first). Pausing holds a batch's queued items back from workers; what runs
finishes. Each action reports how many items it touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from batchd.core.access import Access
from batchd.domain import errors, states
from batchd.domain.models import Batch, Principal
from batchd.domain.states import BatchStatus, ItemStatus

if TYPE_CHECKING:
    from batchd.core.db import Database

RETRYABLE_ITEMS = tuple(sorted(s.value for s, nxt in states.RETRY_ITEM_TRANSITIONS.items()
                               if ItemStatus.QUEUED in nxt))
# The states a retry reopens a batch from (besides open and closed, which it keeps).
REOPENED = tuple(sorted(s.value for s, nxt in states.RETRY_BATCH_TRANSITIONS.items()
                        if BatchStatus.CLOSED in nxt))
FINAL = (BatchStatus.CANCELLED.value, BatchStatus.EXPIRED.value)
MAX_ERROR_FILTER = 500


@dataclass(frozen=True, slots=True)
class RetryFilter:
    """Which items a retry takes: of ``statuses``, those whose error has ``error_code``
    and contains ``error_text`` (in its code or message, any case); None matches any."""

    statuses: tuple[str, ...] = RETRYABLE_ITEMS
    error_code: str | None = None
    error_text: str | None = None


def retry_filter(
    statuses: Iterable[str] | None = None, *, error_code: str | None = None,
    error_text: str | None = None,
) -> RetryFilter:
    """A checked filter: known states only, blank texts mean no condition."""
    chosen = tuple(sorted(set(statuses or RETRYABLE_ITEMS)))
    unknown = [s for s in chosen if s not in RETRYABLE_ITEMS]
    if unknown or not chosen:
        raise errors.InvalidInput(
            f"only failed and cancelled items are retried, not {', '.join(unknown)}",
            details={"field": "status", "allowed": list(RETRYABLE_ITEMS)},
        )
    code = (error_code or "").strip() or None
    text = (error_text or "").strip().lower() or None
    for name, value in (("error_code", code), ("error", text)):
        if value is not None and len(value) > MAX_ERROR_FILTER:
            raise errors.InvalidInput(f"{name} is longer than {MAX_ERROR_FILTER} characters",
                                      details={"field": name})
    return RetryFilter(chosen, code, text)


@dataclass(slots=True)
class RetryDelta:
    """How a retry moves the batch's counters (the columns of ``count_retried``)."""

    n_queued: int = 0
    n_failed: int = 0
    n_cancelled: int = 0
    r_failed: int = 0
    in_buffer_bytes: int = 0
    n_undelivered: int = 0
    r_undelivered: int = 0
    out_buffer_bytes: int = 0

    def values(self) -> list[int]:
        return [getattr(self, f.name) for f in fields(self)]


def retry_delta(tally: Sequence[Sequence[Any]]) -> RetryDelta:
    """The counters' change for the items a retry queues again. ``tally``: per item
    state, (state, items, records, input bytes, undelivered items, their records, their
    output bytes). A failed item's records count as failed; its undelivered result
    leaves the output buffer (it will be replaced)."""
    d = RetryDelta()
    for status, n, records, size, und, r_und, out_bytes in tally:
        d.n_queued += int(n)
        d.in_buffer_bytes += int(size)
        d.n_undelivered += int(und)
        d.r_undelivered += int(r_und)
        d.out_buffer_bytes += int(out_bytes or 0)
        if status == ItemStatus.FAILED:
            d.n_failed += int(n)
            d.r_failed += int(records)
        else:
            d.n_cancelled += int(n)
    return d


def retry_target(status: str) -> BatchStatus:
    """The status a batch has after a retry: an open batch stays open, any other goes
    (back) to closed; a cancelled or expired batch is refused."""
    if status in FINAL:
        raise errors.Conflict(f"the batch is {status}; a {status} batch is not retried",
                              details={"status": status})
    return BatchStatus.OPEN if status == BatchStatus.OPEN else BatchStatus.CLOSED


def retry_sources(target: BatchStatus) -> tuple[str, ...]:
    """The states a retry may move a batch to ``target`` from (the guarded update)."""
    if target == BatchStatus.OPEN:
        return (BatchStatus.OPEN.value,)
    return (BatchStatus.CLOSED.value, *REOPENED)


def check_pausable(status: str) -> None:
    if states.is_terminal(status):
        raise errors.Conflict(f"the batch is {status}; only a running batch is paused",
                              details={"status": status})


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action did: ``touched`` items (retried; held back; released), and the
    batch as it is now."""

    action: str
    touched: int
    batch: Batch


class Actions:
    """Retry, pause and resume, on batches the caller may see (as cancel)."""

    def __init__(self, *, store: Database, access: Access, clock: Callable[[], float],
                 notify: Callable[[], None]) -> None:
        self.store = store
        self.access = access
        self.clock = clock
        self.notify = notify

    async def retry(self, principal: Principal, batch_id: str, f: RetryFilter) -> ActionResult:
        """Queue the matching failed or cancelled items again.

        Raises:
            errors.Conflict: the batch is cancelled or expired.
        """
        await self.access.batch(principal, batch_id)
        touched = await self.store.retry_items(batch_id, f, now=self.clock())
        if touched:
            self.notify()
        return ActionResult("retry", touched, await self.access.batch(principal, batch_id))

    async def pause(self, principal: Principal, batch_id: str) -> ActionResult:
        """Hand out no more of the batch's items; running ones finish.

        Raises:
            errors.Conflict: the batch has ended.
        """
        await self.access.batch(principal, batch_id)
        touched = await self.store.pause_batch(batch_id, now=self.clock())
        return ActionResult("pause", touched, await self.access.batch(principal, batch_id))

    async def resume(self, principal: Principal, batch_id: str) -> ActionResult:
        await self.access.batch(principal, batch_id)
        touched = await self.store.resume_batch(batch_id, now=self.clock())
        if touched:
            self.notify()
        return ActionResult("resume", touched, await self.access.batch(principal, batch_id))
