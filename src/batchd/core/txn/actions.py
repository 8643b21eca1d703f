"""Operator actions' transactions: retry, pause, resume (rules in core.actions)."""

from __future__ import annotations

from batchd.core import actions
from batchd.core.actions import RetryFilter
from batchd.core.txn import usage
from batchd.core.txn.runner import Runner
from batchd.domain import errors
from batchd.store import script as q
from batchd.store.script import Script


def _batch(batch_id: str) -> Script[tuple[int, str, str]]:
    row = yield q.one("batch_for_action", batch_id)
    if row is None:
        raise errors.NotFound(f"batch {batch_id} not found")
    return row[0], row[1], row[2]


def retry(batch_id: str, f: RetryFilter, now: float) -> Script[int]:
    """Queue the items matching ``f`` again, move the counters, reopen the batch."""
    pk, tenant_id, status = yield from _batch(batch_id)
    target = actions.retry_target(status)
    match = {"pk": pk, "statuses": q.array(f.statuses), "code": f.error_code,
             "text": f.error_text}
    delta = actions.retry_delta((yield q.rows("retry_tally", **match)))
    if not delta.n_queued:
        return 0
    yield q.run("retry_drop_outputs", **match)
    touched = yield q.run("retry_items_matching", now=now, **match)
    if touched != delta.n_queued:
        # Not expected (the batch row is held); never leave counters that disagree.
        raise errors.Conflict("the batch changed during the retry; try again")
    yield q.run("count_retried", *delta.values(), pk)
    yield q.run("reopen_batch", target.value, now, pk, q.array(actions.retry_sources(target)))
    yield from usage.add_event(tenant_id, batch_id, "batch.retried", now,
                               {"items": touched, "failed": delta.n_failed,
                                "cancelled": delta.n_cancelled})
    yield q.run("notify_work")
    return int(touched)


def pause(batch_id: str, now: float) -> Script[int]:
    pk, tenant_id, status = yield from _batch(batch_id)
    actions.check_pausable(status)
    held = yield q.value("pause_batch", now, pk)
    if held is None:
        return 0  # paused already
    yield from usage.add_event(tenant_id, batch_id, "batch.paused", now, {"queued": held})
    return int(held)


def resume(batch_id: str, now: float) -> Script[int]:
    pk, tenant_id, _ = yield from _batch(batch_id)
    released = yield q.value("resume_batch", pk)
    if released is None:
        return 0  # not paused
    yield from usage.add_event(tenant_id, batch_id, "batch.resumed", now,
                               {"queued": released})
    yield q.run("notify_work")
    return int(released)


class ActionOps(Runner):
    async def retry_items(self, batch_id: str, f: RetryFilter, *, now: float) -> int:
        """Queue a batch's failed or cancelled items matching ``f`` again (fresh attempts),
        reopening the batch; how many. Raises Conflict for a cancelled or expired batch."""
        return await self._write(retry, batch_id, f, now)

    async def pause_batch(self, batch_id: str, *, now: float) -> int:
        """Stop handing out the batch's items; the queued items held back (0: paused
        already). Raises Conflict for a batch that has ended."""
        return await self._write(pause, batch_id, now)

    async def resume_batch(self, batch_id: str, *, now: float) -> int:
        """Hand out the batch's items again; the queued items released (0: not paused)."""
        return await self._write(resume, batch_id, now)
