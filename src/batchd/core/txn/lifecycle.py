"""A batch's life after intake: stop (cancel, fail-fast, budget, expiry), close, finish."""

from __future__ import annotations

import orjson

from batchd.core import lifecycle
from batchd.core.accounting import cancelled_error
from batchd.core.quotas import Metering
from batchd.core.txn import usage, webhooks
from batchd.core.txn.runner import Runner
from batchd.domain import states
from batchd.domain.states import BatchStatus, StopReason
from batchd.store import script as q
from batchd.store.script import Script


def stop(
    batch_id: str, reason: str, detail: str | None, now: float, *, cancel_running: bool = True,
) -> Script[bool]:
    """Stop dispatching ``batch_id``: cancel queued items, flag running ones (if asked)."""
    target = lifecycle.stop_target(reason)
    row = yield q.one("stop_batch", target.status.value, reason,
                      orjson.dumps(lifecycle.stop_error(reason, detail)), now, batch_id,
                      q.array(target.sources))
    if row is None:
        return False
    tenant_id, pk = row
    cancelled, size = yield q.one("queued_totals", pk)
    hooks = yield q.rows("queued_hooks", pk)
    yield from webhooks.enqueue([(tenant_id, batch_id, r[0], r[2], r[1]) for r in hooks], now)
    yield q.run("cancel_queued_items", orjson.dumps(cancelled_error(reason)), now, pk)
    if cancel_running:
        yield q.run("flag_running_items", pk)
    yield q.run("count_stopped_items", cancelled, cancelled, size, pk)
    if reason == StopReason.CANCELLED:
        # Nothing is taken from a cancelled batch: its output buffer is released.
        yield q.run("release_output_buffer", pk)
    yield from usage.add_event(tenant_id, batch_id, f"batch.{reason}", now,
                               {"cancelled": cancelled})
    yield from maybe_finish(batch_id, now)
    return True


def maybe_finish(batch_id: str, now: float) -> Script[None]:
    """End the batch if nothing is left to run: its final status, event and webhook."""
    row = yield q.one("batch_for_finish", batch_id)
    if row is None:
        return
    verdict = lifecycle.finish_verdict(lifecycle.FinishRow(*row[:13]))
    if verdict is None:
        return
    tenant_id, url, event = row[13:16]
    yield q.run("finish_batch", verdict.value, now, batch_id,
                q.array(lifecycle.finish_sources(verdict)))
    yield from usage.add_event(tenant_id, batch_id, "batch.finished", now,
                               {"status": verdict.value})
    if url is not None:
        yield from webhooks.enqueue([(tenant_id, batch_id, None, event, url)], now)


def close(batch_id: str, now: float, *, reason: str | None) -> Script[bool]:
    tenant_id = yield q.value("close_batch", now, reason, batch_id,
                              q.array(states.batch_sources(BatchStatus.CLOSED)))
    if tenant_id is None:
        return False
    yield from usage.add_event(tenant_id, batch_id, "batch.closed", now,
                               {"reason": reason} if reason else None)
    yield from maybe_finish(batch_id, now)
    return True


def delete_items(batch_pk: int, stage: str | None) -> Script[None]:
    """Delete a batch's items with their payloads: every one (those still staged too), or
    those of one upload."""
    yield q.run("bulk_begin")
    if stage is None:
        for name in ("delete_batch_inputs", "delete_batch_outputs", "delete_batch_items",
                     "delete_batch_stage"):
            yield q.run(name, batch_pk)
    else:
        for name in ("delete_stage_inputs", "delete_stage_outputs", "delete_stage_items"):
            yield q.run(name, batch_pk, stage)
    yield q.run("bulk_end")


def delete_batch(batch_pk: int) -> Script[None]:
    yield from delete_items(batch_pk, None)
    yield q.run("delete_batch_row", batch_pk)


def stop_batch(
    batch_id: str, reason: str, detail: str | None, now: float, cancel_running: bool,
    metering: Metering | None,
) -> Script[bool]:
    if metering is not None:
        yield from usage.meter(metering, now)
    return (yield from stop(batch_id, reason, detail, now, cancel_running=cancel_running))


class LifecycleOps(Runner):
    async def close_batch(self, batch_id: str, *, now: float) -> bool:
        return await self._write(close, batch_id, now, reason=None)

    async def stop_batch(
        self, batch_id: str, *, reason: str, detail: str | None, now: float,
        cancel_running: bool = True, metering: Metering | None = None,
    ) -> bool:
        """Cancel queued items at once, flag running ones; ``reason`` is a StopReason.

        With ``cancel_running`` false, running items are not flagged: they finish and
        keep their outcome, but one that would be retried is cancelled instead.
        ``metering`` is applied in the same transaction, whether or not the batch could
        still be stopped; a passed quota raises QuotaExceeded and stops nothing.
        """
        return await self._write(stop_batch, batch_id, reason, detail, now, cancel_running,
                                 metering)
