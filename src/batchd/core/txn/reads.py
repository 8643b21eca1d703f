"""Reading batches, items, results pages and events.

Each row type has one mapper here, used for both backends: the SQL of every backend
selects the same columns in the same order (``batch_row`` reads the columns of
:class:`Batch` in field order: the fragment ``batch_cols`` of each backend's reads.sql,
which every query of a batch row names).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

from batchd.core.txn.runner import Runner
from batchd.domain.models import Batch, Item
from batchd.domain.records import BatchQuery, BatchTotals, ExportPage, ExportRow
from batchd.store import script as q
from batchd.store.script import Script

BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))
_BOOLS = ("fail_fast", "deliver")


def batch_row(r: Any) -> Batch:
    data = dict(zip(BATCH_FIELDS, r, strict=True))
    data["metadata"] = orjson.loads(data["metadata"]) if data["metadata"] else {}
    data["error"] = orjson.loads(data["error"]) if data["error"] else None
    for name in _BOOLS:
        data[name] = bool(data[name])  # SQLite: 0/1
    return Batch(**data)


def _bytes(v: Any) -> bytes | None:
    return None if v is None else bytes(v)  # PostgreSQL bytea may be a memoryview


def _json(v: Any) -> Any:
    return orjson.loads(v) if v else None


def item_row(r: Any, batch_id: str) -> Item:
    # columns: id, seq, rec0, n_records, status, attempts, input, output, error, usage,
    # started_at, finished_at, runner
    return Item(
        rowid=r[0], batch_id=batch_id, seq=r[1], rec0=r[2], n_records=r[3], status=r[4],
        attempts=r[5], input=bytes(r[6]), output=_bytes(r[7]), error=_json(r[8]),
        usage=_json(r[9]), started_at=r[10], finished_at=r[11], runner=r[12],
    )


def export_row(r: Any) -> ExportRow:
    # columns: id, seq, rec0, n_records, status, input, output, error, ext_id, meta,
    # compute_ms, usage
    return ExportRow(
        rowid=r[0], seq=r[1], rec0=r[2], n_records=r[3], status=r[4], input=bytes(r[5]),
        output=_bytes(r[6]), error=_json(r[7]), ext_id=r[8], meta=_bytes(r[9]),
        compute_ms=r[10], usage=_json(r[11]),
    )


def export_page_row(r: Any) -> ExportPage | None:
    # columns: count, last seq, ids, runners, inputs, input lengths, outputs, output lengths
    if r is None or not r[0]:
        return None
    loads = orjson.loads
    return ExportPage(
        count=r[0], last_seq=r[1], ids=loads(r[2]), runners=loads(r[3]), inputs=bytes(r[4]),
        input_lengths=loads(r[5]), outputs=bytes(r[6]), output_lengths=loads(r[7]),
    )


@dataclass(frozen=True, slots=True)
class Run:
    """A results page whose items are a run (see the query ``results_run``): ``count``
    items with consecutive ids from ``first_id`` and seqs from ``first_seq``, all
    succeeded without an error; ``bare_outputs`` when every one has an output (then the
    outputs are one a line, no ids)."""

    count: int
    first_id: int
    first_seq: int
    bare_outputs: bool


@dataclass(slots=True)
class ResultsPage:
    """A page of the results export as the database assembled it (see the queries
    ``results_run`` and ``results_page``): ``items`` "id,seq,status" of each item,
    comma-separated, in seq order (None for a :class:`Run`, which says them); ``errors``
    each one's error (``null`` for none), one a line, or None when no item has one;
    ``inputs`` the inputs of the items in the page's id range, one a line, in id order;
    ``outputs`` their outputs, each one's id then itself, one a line, in id order (a run
    whose items all have one: only the outputs); ``usages`` each item's usage (``null``
    for none), one a line, in seq order, or None when no item has one."""

    items: bytes | None
    errors: bytes | None
    inputs: bytes
    outputs: bytes
    usages: bytes | None
    run: Run | None = None


def results_page_row(r: Any) -> ResultsPage | None:
    # columns: items, errors, inputs, outputs, usages
    if r is None or r[0] is None:
        return None
    return ResultsPage(items=bytes(r[0]), errors=_bytes(r[1]), inputs=_bytes(r[2]) or b"",
                       outputs=_bytes(r[3]) or b"", usages=_bytes(r[4]))


def results_run_row(r: Any) -> ResultsPage:
    # columns: count, first id, first seq, usages, inputs, outputs count, outputs
    count = int(r[0])
    run = Run(count=count, first_id=int(r[1]), first_seq=int(r[2]),
              bare_outputs=int(r[5]) == count)
    return ResultsPage(items=None, errors=None, inputs=_bytes(r[4]) or b"",
                       outputs=_bytes(r[6]) or b"", usages=_bytes(r[3]), run=run)


def _totals_row(r: Any) -> BatchTotals:
    return BatchTotals(status=r[0], started=bool(r[1]), batches=int(r[2]), items=int(r[3]),
                       cost_usd=float(r[4]), tokens=int(r[5]))


def get_batch(batch_id: str, tenant_id: str | None) -> Script[Batch | None]:
    r = yield q.one("batch_by_id", batch_id=batch_id, tenant_id=tenant_id)
    return None if r is None else batch_row(r)


def find_batch_by_idempotency(tenant_id: str, key: str) -> Script[Batch | None]:
    r = yield q.one("batch_by_idempotency", tenant_id, key)
    return None if r is None else batch_row(r)


# The filters of the query batches_page_before; None matches every batch.
PAGE_FILTERS = ("owner", "status", "task", "dialect", "since", "until", "search")


def list_batches(tenant_id: str, before_pk: int | None, limit: int,
                 filters: dict[str, Any]) -> Script[list[Batch]]:
    where = {name: filters.get(name) for name in PAGE_FILTERS}
    rows = yield q.rows("batches_page_before", tenant_id=tenant_id, before_pk=before_pk,
                        limit=limit, **where)
    return [batch_row(r) for r in rows]


def recent_batches(
    tenant_id: str, owner: str | None, finished_since: float, limit: int
) -> Script[list[Batch]]:
    rows = yield q.rows("recent_batches", tenant_id=tenant_id, owner=owner,
                        finished_since=finished_since, limit=limit)
    return [batch_row(r) for r in rows]


def tenant_buffers(tenant_id: str) -> Script[tuple[int, int]]:
    r = yield q.one("tenant_buffers", tenant_id)
    return int(r[0]), int(r[1])


def _filters(query: BatchQuery) -> dict[str, Any]:
    return {
        "tenant_id": query.tenant_id, "owner": query.owner, "task": query.task,
        "statuses": None if query.statuses is None else q.array(query.statuses),
        "started": query.started,
    }


def query_batches(query: BatchQuery, offset: int, limit: int) -> Script[tuple[list[Batch], int]]:
    where = _filters(query)
    total = yield q.value("count_batches_matching", **where)
    rows = yield q.rows("batches_matching", **where, offset=offset, limit=limit)
    return [batch_row(r) for r in rows], int(total)


def batch_totals(query: BatchQuery) -> Script[list[BatchTotals]]:
    rows = yield q.rows("batch_totals_matching", **_filters(query))
    return [_totals_row(r) for r in rows]


def list_items(
    batch_id: str, status: str | None, after_seq: int, limit: int
) -> Script[list[Item]]:
    rows = yield q.rows("items_page", batch_id=batch_id, status=status, after_seq=after_seq,
                        limit=limit)
    return [item_row(r, batch_id) for r in rows]


def get_item(batch_id: str, rowid: int) -> Script[Item | None]:
    r = yield q.one("item_of_batch", rowid, batch_id)
    return None if r is None else item_row(r, batch_id)


def export_rows(batch_id: str, after_seq: int, limit: int) -> Script[list[ExportRow]]:
    rows = yield q.rows("finished_items_page", batch_id, after_seq, limit)
    return [export_row(r) for r in rows]


def export_page(
    batch_id: str, status: str, after_seq: int, limit: int
) -> Script[ExportPage | None]:
    return export_page_row((yield q.one("export_page", batch_id, after_seq, status, limit)))


def last_item_seq(batch_id: str) -> Script[int | None]:
    found = yield q.value("last_item_seq", batch_id)
    return None if found is None else int(found)


def results_page(batch_id: str, after_seq: int, upto_seq: int) -> Script[ResultsPage | None]:
    """The page as a run when its items are one (most pages: the database then need not
    write each item's id, seq and status), else item by item."""
    run = yield q.one("results_run", batch_id=batch_id, after_seq=after_seq,
                      upto_seq=upto_seq)
    if not run[0]:
        return None  # no item in the range
    if run[1] is not None:
        return results_run_row(run)
    return results_page_row((yield q.one("results_page", batch_id, after_seq, upto_seq)))


def export_rows_between(
    batch_id: str, after_seq: int, upto_seq: int
) -> Script[list[ExportRow]]:
    rows = yield q.rows("finished_items_range", batch_id, after_seq, upto_seq)
    return [export_row(r) for r in rows]


def item_states(batch_id: str, after_seq: int, limit: int) -> Script[list[tuple[int, int, str]]]:
    rows = yield q.rows("item_states", batch_id, after_seq, limit)
    return [(r[0], r[1], r[2]) for r in rows]


def item_batch(rowid: int, tenant_id: str) -> Script[str | None]:
    found = yield q.value("batch_of_item", rowid, tenant_id)
    return None if found is None else str(found)


class ReadOps(Runner):
    async def get_batch(self, batch_id: str, *, tenant_id: str | None) -> Batch | None:
        """The batch, if it is visible (and the tenant's, when ``tenant_id`` is given)."""
        return await self._read(get_batch, batch_id, tenant_id)

    async def find_batch_by_idempotency(self, tenant_id: str, key: str) -> Batch | None:
        return await self._read(find_batch_by_idempotency, tenant_id, key)

    async def list_batches(
        self, *, tenant_id: str, before_pk: int | None, limit: int, **filters: Any,
    ) -> list[Batch]:
        """The tenant's batches newest first, before ``before_pk``, narrowed by
        ``filters`` (:data:`PAGE_FILTERS`: owner, status, task, dialect, created since and
        until, a text in the metadata; each None or left out matches every batch)."""
        unknown = set(filters) - set(PAGE_FILTERS)
        if unknown:
            raise TypeError(f"unknown batch filters: {sorted(unknown)}")
        return await self._read(list_batches, tenant_id, before_pk, limit, filters)

    async def recent_batches(
        self, *, tenant_id: str, owner: str | None, finished_since: float, limit: int
    ) -> list[Batch]:
        """Active batches, and those finished at or after ``finished_since``, newest first."""
        return await self._read(recent_batches, tenant_id, owner, finished_since, limit)

    async def tenant_buffers(self, tenant_id: str) -> tuple[int, int]:
        """Input and output buffer bytes in use over the tenant's active batches."""
        return await self._read(tenant_buffers, tenant_id)

    async def query_batches(
        self, query: BatchQuery, *, offset: int, limit: int
    ) -> tuple[list[Batch], int]:
        """A page of the matching batches, newest first, and how many match in all."""
        return await self._read(query_batches, query, offset, limit)

    async def batch_totals(self, query: BatchQuery) -> list[BatchTotals]:
        """The matching batches summed by status and by whether they started."""
        return await self._read(batch_totals, query)

    async def list_items(
        self, batch_id: str, *, status: str | None, after_seq: int, limit: int
    ) -> list[Item]:
        return await self._read(list_items, batch_id, status, after_seq, limit)

    async def get_item(self, batch_id: str, rowid: int) -> Item | None:
        return await self._read(get_item, batch_id, rowid)

    async def export_rows(self, batch_id: str, *, after_seq: int, limit: int) -> list[ExportRow]:
        """Finished items in seq order, for streaming export."""
        return await self._read(export_rows, batch_id, after_seq, limit)

    async def export_page(
        self, batch_id: str, *, status: str, after_seq: int, limit: int
    ) -> ExportPage | None:
        """Up to ``limit`` items in ``status`` after ``after_seq``, in seq order, as one
        :class:`ExportPage` (None when there are none): the bulk export's hot path, which
        the database assembles so that no Python object is made per row."""
        return await self._read(export_page, batch_id, status, after_seq, limit)

    async def last_item_seq(self, batch_id: str) -> int | None:
        """The highest seq of the batch's items (None: it has none)."""
        return await self._read(last_item_seq, batch_id)

    async def results_page(
        self, batch_id: str, *, after_seq: int, upto_seq: int
    ) -> ResultsPage | None:
        """The finished items with ``after_seq < seq <= upto_seq``, in seq order, as one
        :class:`ResultsPage` (None when there are none): the results export's hot path,
        which the database assembles so that no Python object is made per row."""
        return await self._read(results_page, batch_id, after_seq, upto_seq)

    async def export_rows_between(
        self, batch_id: str, *, after_seq: int, upto_seq: int
    ) -> list[ExportRow]:
        """The finished items with ``after_seq < seq <= upto_seq``, in seq order."""
        return await self._read(export_rows_between, batch_id, after_seq, upto_seq)

    async def item_states(
        self, batch_id: str, *, after_seq: int, limit: int
    ) -> list[tuple[int, int, str]]:
        """``(seq, rowid, status)`` of the items after ``after_seq``, in seq order."""
        return await self._read(item_states, batch_id, after_seq, limit)

    async def item_batch(self, rowid: int, *, tenant_id: str) -> str | None:
        """The id of the batch holding item ``rowid``, if it is the tenant's and visible."""
        return await self._read(item_batch, rowid, tenant_id)
