"""Reads: batches, items, results and usage, scoped to what the caller may see."""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchd.core import access, paging
from batchd.core.access import Access
from batchd.core.paging import RecordRow
from batchd.domain import errors
from batchd.domain.models import Batch, Item, Principal, item_public_id, item_rowid
from batchd.domain.records import BatchTotals, ExportPage

if TYPE_CHECKING:
    from batchd.core.db import Database

# Results are read this many records' worth of items per page.
EXPORT_PAGE_RECORDS = 8192


@dataclass(frozen=True, slots=True)
class TenantActivity:
    """A tenant at a glance: the recent batches the caller may see, the items running
    over all of the tenant's active batches, and its buffers' bytes in use."""

    batches: list[Batch]
    running: int
    input_bytes: int
    output_bytes: int


class Browse:
    """Every read of batches and items, through the caller's scope."""

    def __init__(self, *, store: Database, access: Access) -> None:
        self.store = store
        self.access = access

    async def list_batches(
        self, principal: Principal, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Batch], str | None]:
        rows = await self.store.list_batches(
            tenant_id=principal.tenant_id, owner=access.owner_scope(principal), status=status,
            before_pk=paging.decode_cursor(cursor, "b"), limit=limit + 1,
        )
        return paging.next_cursor(rows, limit, "b", "pk")

    async def page_batches(
        self, principal: Principal, *, offset: int, limit: int, **filters: Any
    ) -> tuple[list[Batch], int]:
        return await self.store.query_batches(
            access.batch_query(principal, **filters), offset=offset, limit=limit
        )

    async def batch_totals(self, principal: Principal, **filters: Any) -> list[BatchTotals]:
        return await self.store.batch_totals(access.batch_query(principal, **filters))

    async def tenant_activity(
        self, principal: Principal, *, finished_since: float, now: float, limit: int
    ) -> TenantActivity:
        """The tenant's active batches and those finished since ``finished_since`` that
        ``principal`` may see."""
        owner = access.owner_scope(principal)
        visible = await self.store.recent_batches(
            tenant_id=principal.tenant_id, owner=owner, finished_since=finished_since,
            limit=limit,
        )
        everyone = visible if owner is None else await self.store.recent_batches(
            tenant_id=principal.tenant_id, owner=None, finished_since=now,
            limit=limit,
        )
        in_used, out_used = await self.store.tenant_buffers(principal.tenant_id)
        running = sum(b.n_running for b in everyone if not b.is_terminal)
        return TenantActivity(batches=visible, running=running, input_bytes=in_used,
                              output_bytes=out_used)

    async def list_items(
        self, principal: Principal, batch_id: str, *, status: str | None, cursor: str | None,
        limit: int,
    ) -> tuple[list[Item], str | None]:
        await self.access.batch(principal, batch_id)
        after = paging.decode_cursor(cursor, "s")
        rows = await self.store.list_items(
            batch_id, status=status, after_seq=-1 if after is None else after, limit=limit + 1
        )
        return paging.next_cursor(rows, limit, "s", "seq")

    async def items_of(self, batch: Batch) -> list[Item]:
        """Every item of a batch the caller was given (a small one: all in one read)."""
        return await self.store.list_items(
            batch.id, status=None, after_seq=-1, limit=max(1, batch.n_total)
        )

    async def get_item(self, principal: Principal, batch_id: str, item_id: str) -> Item:
        await self.access.batch(principal, batch_id)
        rowid = item_rowid(item_id)
        item = await self.store.get_item(batch_id, rowid) if rowid is not None else None
        if item is None:
            raise errors.NotFound(f"item {item_id} not found")
        return item

    async def item_at(self, principal: Principal, item_id: str) -> tuple[Batch, Item]:
        """An item found by its id alone, with its batch."""
        rowid = item_rowid(item_id)
        batch_id = (
            await self.store.item_batch(rowid, tenant_id=principal.tenant_id)
            if rowid is not None else None
        )
        if batch_id is None:
            raise errors.NotFound(f"item {item_id} not found")
        batch = await self.access.batch(principal, batch_id)
        return batch, await self.get_item(principal, batch_id, item_id)

    async def iter_results(
        self, principal: Principal, batch_id: str
    ) -> AsyncIterator[list[RecordRow]]:
        """Finished records in order, a page of items at a time."""
        batch = await self.access.batch(principal, batch_id)
        multi = batch.records_per_item != 1
        page = max(1, min(512, EXPORT_PAGE_RECORDS // batch.records_per_item))
        after = -1
        while True:
            rows = await self.store.export_rows(batch_id, after_seq=after, limit=page)
            if not rows:
                return
            yield [r for row in rows for r in paging.records_of(row, multi)]
            after = rows[-1].seq
            if len(rows) < page:
                return

    async def _item_states(
        self, batch: Batch, page: int
    ) -> AsyncIterator[list[tuple[int, int, str]]]:
        after = -1
        while True:
            found = await self.store.item_states(batch.id, after_seq=after, limit=page)
            if found:
                yield found
            if len(found) < page:
                return
            after = found[-1][0]

    async def item_ids(self, batch: Batch, *, page: int = 5000) -> AsyncIterator[list[str]]:
        """The public ids of a batch's items, in order, a page at a time."""
        async for rows in self._item_states(batch, page):
            yield [item_public_id(rowid) for _, rowid, _ in rows]

    async def item_rowids_by_group(
        self, batch: Batch, group_of: Mapping[str, str], *, page: int = 5000
    ) -> dict[str, array[int]]:
        """Each item's row id under its status's group (``group_of``), in seq order.

        One pass over the batch in seq order: an item that changes status while the
        pass runs is seen exactly once, where it was when its page was read (reading
        each status on its own would find an item claimed in between twice, or miss
        it). Eight bytes per item; statuses without a group are left out.
        """
        groups: dict[str, array[int]] = {}
        async for rows in self._item_states(batch, page):
            for _, rowid, status in rows:
                group = group_of.get(status)
                if group is not None:
                    if group not in groups:
                        groups[group] = array("q")
                    groups[group].append(rowid)
        return groups

    async def iter_export_pages(
        self, batch: Batch, *, status: str, page: int = 2000
    ) -> AsyncIterator[ExportPage]:
        """A batch's items in ``status``, in order, a page at a time.

        The next page is read while the caller works on this one (the store reads in
        another thread, or on the database server).
        """
        async def read(after: int) -> ExportPage | None:
            return await self.store.export_page(batch.id, status=status, after_seq=after,
                                                limit=page)

        pending = asyncio.ensure_future(read(-1))
        try:
            while True:
                found = await pending
                if found is None:
                    return
                if found.count == page:
                    pending = asyncio.ensure_future(read(found.last_seq))
                    # Let the read start (reach its thread) before the caller works on
                    # this page without yielding to the loop.
                    await asyncio.sleep(0)
                yield found
                if found.count < page:
                    return
        finally:
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def watch(
        self, principal: Principal, batch_id: str, *, interval_s: float = 0.5
    ) -> AsyncIterator[Batch]:
        """The batch each time its counters change, ending with its terminal state."""
        last: tuple[Any, ...] | None = None
        while True:
            batch = await self.access.batch(principal, batch_id)
            key = (batch.status, batch.n_queued, batch.n_running, batch.n_succeeded,
                   batch.n_failed, batch.n_cancelled, batch.n_total)
            if key != last:
                last = key
                yield batch
            if batch.is_terminal:
                return
            await asyncio.sleep(interval_s)

    async def usage(self, principal: Principal, period: str) -> dict[str, float]:
        return await self.store.usage(principal.tenant_id, period)

    async def usage_by_period(
        self, principal: Principal, periods: list[str]
    ) -> dict[str, dict[str, float]]:
        """The tenant's usage in each of ``periods`` (empty where nothing was used)."""
        found = await self.store.usage_since(principal.tenant_id, min(periods))
        return {p: found.get(p, {}) for p in periods}
