"""Reads: batches, items, results and usage, scoped to what the caller may see."""

from __future__ import annotations

import asyncio
import itertools
import operator
from array import array
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from batchd.core import access, paging
from batchd.core.access import Access
from batchd.core.paging import RecordRow
from batchd.core.txn.reads import ResultsPage, Run
from batchd.domain import codec, errors
from batchd.domain.models import Batch, Item, Principal, item_public_id, item_rowid
from batchd.domain.records import (
    NO_USAGE,
    RESULT_COLUMNS,
    RESULT_DOCUMENTS,
    RESULT_TRAILING,
    BatchTotals,
    ExportPage,
    ExportRow,
    record_usage_runs,
)
from batchd.export.table import (
    Column,
    Constant,
    DocumentTexts,
    Numbered,
    Table,
    TablePage,
    TableRows,
)

if TYPE_CHECKING:
    from batchd.core.db import Database

P = TypeVar("P")

# Results are read this many records' worth of items per page.
EXPORT_PAGE_RECORDS = 8192
# Pages of results read while the caller writes the current one: the database (SQLite's
# reading threads, PostgreSQL's server) works on them meanwhile.
RESULTS_READ_AHEAD = 2
# item_public_id(n) is this prefix and n's digits.
_ID_PREFIX = item_public_id(0)[:-1]
_NO_USAGE = codec.dumps(NO_USAGE)


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
        self, principal: Principal, *, cursor: str | None, limit: int, search: str | None = None,
        **filters: Any,
    ) -> tuple[list[Batch], str | None]:
        """The batches ``principal`` may see, newest first, narrowed by ``filters`` (status,
        task, dialect, created since and until: see ``ReadOps.list_batches``). ``search``
        is a batch id (that batch alone) or a text found in the metadata."""
        search = (search or "").strip() or None
        if search is not None and search.startswith("bat_") and " " not in search:
            try:
                return [await self.access.batch(principal, search)], None
            except errors.NotFound:
                return [], None
        rows = await self.store.list_batches(
            tenant_id=principal.tenant_id, owner=access.owner_scope(principal), search=search,
            before_pk=paging.decode_cursor(cursor, "b"), limit=limit + 1, **filters,
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

    def iter_results(self, principal: Principal, batch_id: str) -> TableRows:
        """Finished records in order, a page of items at a time: pages of
        ``{item_id, seq, status, input, output, error}`` dicts, which the export writers
        read as a :class:`Table` of the stored JSON instead (spliced as it is)."""

        async def pages() -> AsyncIterator[TablePage]:
            batch = await self.access.batch(principal, batch_id)
            found = (self._item_pages(batch.id) if batch.records_per_item == 1
                     else self._record_pages(batch))
            async for page in found:
                yield page

        return TableRows(Table(columns=RESULT_COLUMNS, documents=RESULT_DOCUMENTS,
                               trailing=RESULT_TRAILING, pages=pages))

    def _item_pages(self, batch_id: str) -> AsyncIterator[TablePage]:
        """The results of a batch of one record per item, as the database assembled them."""

        async def read(after: int, upto: int) -> TablePage | None:
            found = await self.store.results_page(batch_id, after_seq=after, upto_seq=upto)
            page = None if found is None else results_table_page(found)
            if found is not None and page is None:
                # The id range held other items too (or a document a line end): this
                # page goes the general way.
                rows = await self.store.export_rows_between(batch_id, after_seq=after,
                                                            upto_seq=upto)
                page = records_table_page([paging.records_of(r, False)[0] for r in rows])
            return page

        return self._seq_ranges(batch_id, EXPORT_PAGE_RECORDS, read)

    def _record_pages(self, batch: Batch) -> AsyncIterator[TablePage]:
        """The results of a batch of several records per item, each item's cut apart."""

        async def read(after: int, upto: int) -> TablePage | None:
            rows = await self.store.export_rows_between(batch.id, after_seq=after,
                                                        upto_seq=upto)
            return items_records_page(rows) if rows else None

        span = max(1, min(512, EXPORT_PAGE_RECORDS // batch.records_per_item))
        return self._seq_ranges(batch.id, span, read)

    async def _seq_ranges(
        self, batch_id: str, span: int, read: Callable[[int, int], Awaitable[P | None]]
    ) -> AsyncIterator[P]:
        """``read(after, upto)`` of each range of ``span`` seqs of the batch's items, in
        order (the empty ones left out), RESULTS_READ_AHEAD reads running ahead of the
        caller. Ranges, not pages after the last seq read, so that the reads need not
        wait for each other; the end is looked up again when reached, for items appended
        meanwhile."""
        pending: deque[asyncio.Future[P | None]] = deque()
        after, last = -1, await self.store.last_item_seq(batch_id)
        try:
            while True:
                while last is not None and after < last and len(pending) <= RESULTS_READ_AHEAD:
                    upto = min(after + span, last)
                    pending.append(asyncio.ensure_future(read(after, upto)))
                    after = upto
                if not pending:
                    last = await self.store.last_item_seq(batch_id)
                    if last is None or after >= last:
                        return
                    continue
                # Let the reads start (reach their thread, or the server) before the
                # caller works on this page without yielding to the loop.
                await asyncio.sleep(0)
                found = await pending.popleft()
                if found is not None:
                    yield found
        finally:
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

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


def results_table_page(page: ResultsPage) -> TablePage | None:
    """A results page as the writers take it, cut apart in C calls (no Python work per
    row unless some item has no output); None when the page's id range held other items
    than its own (out of seq order, unfinished, another batch's), or a stored document
    holds a line end (no compact JSON of orjson's)."""
    if page.run is not None:
        return _run_table_page(page, page.run)
    assert page.items is not None
    fields = page.items.split(b",")
    ids, seqs, statuses = fields[0::3], fields[1::3], fields[2::3]
    n = len(ids)
    inputs = page.inputs.split(b"\n")
    errors = [b"null"] * n if page.errors is None else page.errors.split(b"\n")
    usages = _usages(page.usages, n)
    if (len(fields) != 3 * n or len(inputs) != n or len(errors) != n or len(usages) != n
            or not _ascending(ids)):
        return None
    outputs = _outputs_of(ids, page.outputs)
    if outputs is None:
        return None
    status: Column = (
        Constant(statuses[0].decode()) if statuses.count(statuses[0]) == n
        else b",".join(statuses).decode().split(",")
    )
    columns = [Numbered(ids, prefix=_ID_PREFIX), Numbered(seqs), status]
    return TablePage(size=n, columns=columns, documents=[
        DocumentTexts(inputs), DocumentTexts(outputs), DocumentTexts(usages),
        DocumentTexts(errors)])


def _run_table_page(page: ResultsPage, run: Run) -> TablePage | None:
    """A run's page: its ids and seqs counted out, one status, no error."""
    n = run.count
    ids = _digits(run.first_id, n)
    inputs = page.inputs.split(b"\n")
    usages = _usages(page.usages, n)
    outputs = page.outputs.split(b"\n") if run.bare_outputs else _outputs_of(ids, page.outputs)
    if len(inputs) != n or len(usages) != n or outputs is None or len(outputs) != n:
        return None
    columns: list[Column] = [Numbered(ids, prefix=_ID_PREFIX),
                             Numbered(_digits(run.first_seq, n)), Constant("succeeded")]
    return TablePage(size=n, columns=columns, documents=[
        DocumentTexts(inputs), DocumentTexts(outputs), DocumentTexts(usages),
        DocumentTexts([b"null"] * n)])


def _digits(first: int, n: int) -> list[bytes]:
    """The decimal digits of ``n`` consecutive integers from ``first``."""
    return orjson.dumps(list(range(first, first + n)))[1:-1].split(b",") if n else []


def _usages(text: bytes | None, n: int) -> list[bytes]:
    """Each of ``n`` items' usage text, ``null`` (none stored) read as no usage's."""
    if text is None:
        return [_NO_USAGE] * n
    usages = text.split(b"\n")
    if b"null" in usages:
        usages = [_NO_USAGE if u == b"null" else u for u in usages]
    return usages


def _ascending(ids: list[bytes]) -> bool:
    numbers = orjson.loads(b"[" + b",".join(ids) + b"]")
    return all(map(operator.lt, numbers, itertools.islice(numbers, 1, None)))


def _outputs_of(ids: list[bytes], text: bytes) -> list[bytes] | None:
    """Each item's output (``null`` for none) of the page's items ``ids``, from the
    outputs of their id range; None if those are not all theirs."""
    if not text:
        return [b"null"] * len(ids)
    lines = text.split(b"\n")
    if len(lines) % 2:
        return None
    found_ids, outputs = lines[0::2], lines[1::2]
    if found_ids == ids:
        return outputs
    found = dict(zip(found_ids, outputs, strict=True))
    if len(found.keys() & set(ids)) != len(found_ids):
        return None
    return [found.get(i, b"null") for i in ids]


def items_records_page(rows: list[ExportRow]) -> TablePage:
    """The records of items of several records each, as a page of the results table. An
    item that succeeded whole, its records and outputs plain objects (see
    :func:`_elements`), is cut apart in C calls, its stored texts spliced as they are (the
    bytes ``records_of`` and a dump of each would give: stored JSON is orjson's compact
    text); any other item goes record by record."""
    ids: list[bytes] = []
    seqs: list[bytes] = []
    statuses: list[str] = []
    docs: list[list[bytes]] = [[] for _ in RESULT_DOCUMENTS + RESULT_TRAILING]
    inputs, outputs, usages, errors_ = docs
    dumps = codec.dumps
    for row in rows:
        n = row.n_records
        cut = _cut_records(row)
        if cut is not None:
            ids += [b"%d" % row.rowid] * n
            seqs += _digits(row.rec0, n)
            statuses += ["succeeded"] * n
            inputs += cut[0]
            outputs += cut[1]
            for share, count in record_usage_runs(row.usage, n):
                usages += [dumps(share)] * count
            errors_ += [b"null"] * n
            continue
        records = paging.records_of(row, True)
        ids += [b"%d" % row.rowid] * len(records)
        seqs += [b"%d" % r["seq"] for r in records]
        statuses += [r["status"] for r in records]
        for texts, name in zip(docs, RESULT_DOCUMENTS + RESULT_TRAILING, strict=True):
            texts += [dumps(r[name]) for r in records]
    status: Column = (Constant("succeeded") if statuses.count("succeeded") == len(statuses)
                      else statuses)
    return TablePage(size=len(ids),
                     columns=[Numbered(ids, prefix=_ID_PREFIX), Numbered(seqs), status],
                     documents=[DocumentTexts(d) for d in docs])


def _cut_records(row: ExportRow) -> tuple[list[bytes], list[bytes]] | None:
    """Each record's input and output text of an item that succeeded whole, when both
    arrays cut apart (see :func:`_elements`); else None."""
    if row.status != "succeeded" or row.error is not None or row.output is None:
        return None
    inputs = _elements(row.input, row.n_records)
    if inputs is None:
        return None
    outputs = _elements(row.output, row.n_records)
    return None if outputs is None else (inputs, outputs)


def _elements(text: bytes, n: int) -> list[bytes] | None:
    """The texts of a compact JSON array's ``n`` elements, when all are objects holding no
    ``{`` but their own (no nested object, no brace in a string); else None.

    Then the array holds exactly ``n`` ``{``, and cut at each ``},{`` it falls into ``n``
    parts; conversely, when a text opening ``[{`` and closing ``}]`` holds ``n`` ``{`` and
    ``n - 1`` ``},{``, each ``{`` opens an element: the first, and one after each
    ``},{`` (an element that is no object neither ends with ``}`` nor starts with ``{``,
    so it would break the run of ``},{`` the count needs)."""
    if (not text.startswith(b"[{") or not text.endswith(b"}]") or text.count(b"{") != n
            or b"\n" in text):
        return None
    parts = text[1:-1].replace(b"},{", b"}\n{").split(b"\n")
    return parts if len(parts) == n else None


def records_table_page(records: list[RecordRow]) -> TablePage:
    """Result records (dicts) as a page of the results table."""
    # Trimmed copies: orjson's own bytes keep its spare capacity (KiBs for a tiny
    # document), which a page of thousands, read ahead, turned into hundreds of MB.
    dumps = codec.dumps
    return TablePage(
        size=len(records),
        columns=[[r[c] for r in records] for c in RESULT_COLUMNS],
        documents=[DocumentTexts([dumps(r[d]) for r in records])
                   for d in RESULT_DOCUMENTS + RESULT_TRAILING],
    )
