"""Changing a running batch: close, cancel, hand out results; metering plain calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from batchd.core.access import Access
from batchd.core.quotas import Metering
from batchd.domain.models import Batch, Principal
from batchd.domain.records import ExportRow
from batchd.domain.states import StopReason

if TYPE_CHECKING:
    from batchd.core.db import Database


class Control:
    """Close, cancel and results handed out, on batches the caller may see."""

    def __init__(self, *, store: Database, access: Access, clock: Callable[[], float],
                 notify: Callable[[], None]) -> None:
        self.store = store
        self.access = access
        self.clock = clock
        self.notify = notify

    async def close_batch(self, principal: Principal, batch_id: str) -> Batch:
        batch = await self.access.batch(principal, batch_id)
        if batch.status != "open":
            return batch  # closing twice is not an error
        await self.store.close_batch(batch_id, now=self.clock())
        return await self.access.batch(principal, batch_id)

    async def cancel_batch(
        self, principal: Principal, batch_id: str, reason: str | None, *,
        cancel_running: bool = True, metering: Metering | None = None,
    ) -> Batch:
        """Cancel queued items now and, with ``cancel_running``, the running ones too.

        ``metering`` is applied in the same transaction, even if the batch had ended.
        """
        batch = await self.access.batch(principal, batch_id)
        if not batch.is_terminal or metering is not None:
            await self.store.stop_batch(
                batch_id, reason=StopReason.CANCELLED, detail=reason, now=self.clock(),
                cancel_running=cancel_running, metering=metering,
            )
        return await self.access.batch(principal, batch_id)

    async def take_results(
        self, principal: Principal, batch_id: str, *, max_items: int
    ) -> tuple[Batch, list[ExportRow]]:
        """Hand out finished results of a ``deliver`` batch, freeing its output buffer."""
        batch = await self.access.batch(principal, batch_id)
        if batch.status == "cancelled":
            return batch, []  # nothing is handed out after a cancel
        rows = await self.store.take_results(batch_id, limit=max_items, now=self.clock())
        if rows:
            self.notify()  # a batch paused on a full output buffer may run again
        return await self.access.batch(principal, batch_id), rows

    async def meter(self, metering: Metering) -> None:
        """Count a request that changes nothing else, checking its quotas first.

        Raises:
            errors.QuotaExceeded: a quota would be passed; nothing was counted.
        """
        await self.store.meter(metering, now=self.clock())
