"""Records to staged items: checked against the task, cut into items, priced, grouped.

No I/O: the groups are written by :mod:`batchd.core.submit`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from batchd.domain import codec, errors
from batchd.domain.models import BatchSpec
from batchd.domain.records import StagedItem
from batchd.tasks.registry import TaskDef

# Items are staged in groups of at most this many bytes, so a large upload is never
# held in memory whole.
STAGE_BYTES = 4 * 1024 * 1024
# An upload of at least this many bytes has the store reclaim the space its staging used
# once it ends (committed or discarded); below it, the space is left for the next uploads
# to reuse, which is cheaper than reclaiming it after every small request.
RECLAIM_BYTES = 1024 * 1024
# Records of these types are JSON arrays and objects, which a bulk insert can take out of one
# JSON array as they are (a string or a number would come out decoded).
_CONTAINERS = frozenset({dict, list})


@dataclass(slots=True)
class PackedItems:
    """Items of one record each, held as one JSON array for a bulk insert.

    ``inputs`` is orjson's array of the records: orjson writes an array as its elements
    joined by commas, so each element is, byte for byte, the item's input as
    ``codec.dumps`` writes it. Every item is estimated at ``est_usd``; ``est_total`` is
    their sum, added item by item as for a list of :class:`StagedItem`.
    """

    count: int
    inputs: bytes
    size: int  # the items' inputs, in bytes
    est_usd: float
    est_total: float


Group = list[StagedItem] | PackedItems


@dataclass(slots=True)
class Chunk:
    """An item of a variable number of records, as chunked dialects submit them."""

    records: list[Any]
    ext_id: str | None = None  # the client's id for the chunk, returned with its result
    meta: Any = None  # JSON data the dialect keeps with the chunk (returned with the result)


@dataclass(slots=True)
class Run:
    """One record with its own runner and webhook, as job-style dialects submit them."""

    input: Any
    runner: str | None = None  # overrides the batch's runner for this record
    webhook_url: str | None = None  # notified once this record's item has ended


@dataclass(slots=True)
class Tally:
    """What an upload holds so far: items, their estimated cost and input bytes."""

    items: int = 0
    est_usd: float = 0.0
    size: int = 0

    def add(self, group: Group) -> None:
        if isinstance(group, PackedItems):
            self.items += group.count
            self.est_usd += group.est_total
            self.size += group.size
            return
        self.items += len(group)
        self.est_usd += sum(i.est_usd for i in group)
        self.size += sum(len(i.input) for i in group)

    @property
    def worth_reclaiming(self) -> bool:
        """Whether the store should give back the space this upload's staging used."""
        return self.size >= RECLAIM_BYTES


def check_records(task: TaskDef, part: list[Any], index: int) -> None:
    """Raises InvalidRecord for the first record of ``part`` its task's schema refuses
    (``index``: the position of ``part``'s first record in the request)."""
    for offset, rec in enumerate(part):
        problem = task.input_errors(rec)
        if problem:
            where = index + offset
            raise errors.InvalidRecord(f"item {where}: {problem}", index=where, problem=problem)


def run_item(
    task: TaskDef, spec: BatchSpec, index: int, run: Run, webhook_event: str | None
) -> StagedItem:
    if run.runner is not None and run.runner not in task.runners:
        problem = (f"task {task.name!r} has no runner {run.runner!r}; "
                   f"known: {sorted(task.runners)}")
        raise errors.InvalidRecord(f"run {index}: {problem}", index=index, problem=problem,
                                   field="runner")
    cost = task.cost_for(run.runner or spec.runner)
    return StagedItem(
        1, codec.dumps(run.input), cost.estimate_item([run.input]), runner=run.runner,
        webhook_url=run.webhook_url,
        webhook_event=webhook_event if run.webhook_url is not None else None,
    )


def chunk_items(task: TaskDef, runner: str | None, chunks: list[Chunk]) -> list[StagedItem]:
    """One item per chunk, each checked against the task's schema."""
    cost = task.cost_for(runner)
    check = task.input_schema is not None and task.validate_input
    items = []
    offset = 0
    for chunk in chunks:
        if check:
            check_records(task, chunk.records, offset)
        offset += len(chunk.records)
        items.append(StagedItem(
            n_records=len(chunk.records), input=codec.dumps(chunk.records),
            est_usd=cost.estimate_item(chunk.records), ext_id=chunk.ext_id,
            meta=None if chunk.meta is None else codec.dumps(chunk.meta),
        ))
    return items


async def item_groups(
    task: TaskDef, spec: BatchSpec, records: AsyncIterator[list[Any]], *, flush_items: int,
    max_items: int,
) -> AsyncGenerator[Group, None]:
    """Checked records cut into items, in groups bounded by count and bytes.

    Raises:
        errors.InvalidRecord: a record fails the task's schema.
        errors.LimitExceeded: the request carries more than ``max_items`` items.
    """
    rpi = spec.records_per_item
    if rpi < 1:
        # A chunked batch (records_per_item 0) takes whole chunks, one item each.
        async for part in records:
            if part:
                raise errors.InvalidInput("this batch takes its records in chunks")
        return
    cutter = _Cutter(task, spec, flush_items)
    check = task.input_schema is not None and task.validate_input
    index = 0
    async for part in records:
        if check:
            check_records(task, part, index)
        index += len(part)
        if index > max_items * rpi:
            raise errors.LimitExceeded(f"a request may carry at most {max_items} items")
        for group in cutter.take(part):
            yield group
    last = cutter.finish()
    if last:
        yield last


class _Cutter:
    """Cuts records into items of ``records_per_item`` and hands out full groups.

    Records that are all JSON objects or arrays, at a flat cost, one per item, are packed:
    encoded a slice at a time into one array (:class:`PackedItems`), with no Python object
    per item. Others become a :class:`StagedItem` each. A group holds one kind only.
    """

    def __init__(self, task: TaskDef, spec: BatchSpec, flush_items: int) -> None:
        self.cost = task.cost_for(spec.runner)
        self.rpi = spec.records_per_item
        self.flush_items = flush_items
        self.flat_est = (self.cost.per_record_usd + self.cost.per_item_usd
                         if self.cost.is_flat else None)
        self.pending: list[StagedItem] = []
        self.pieces: list[bytes] = []  # JSON arrays of the records packed so far
        self.packed = 0  # how many records those arrays hold
        self.pending_bytes = 0
        self.carry: list[Any] = []

    def take(self, part: list[Any]) -> list[Group]:
        if self.rpi != 1:
            full = self._multiples(part)
        elif self.flat_est is not None and _containers(part):
            full = self._packed(part, self.flat_est)
        else:
            full = self._singles(part)
        if len(self.pending) + self.packed >= self.flush_items or (
            self.pending_bytes >= STAGE_BYTES
        ):
            full.append(self._flush())
        return full

    def finish(self) -> Group:
        if self.carry:
            c = self.carry
            self.pending.append(StagedItem(len(c), codec.dumps(c), self.cost.estimate_item(c)))
            self.carry = []
        return self._flush()

    def _flush(self) -> Group:
        group: Group
        if self.pieces:
            assert self.flat_est is not None
            group = _pack(self.pieces, self.packed, self.pending_bytes, self.flat_est)
            self.pieces, self.packed = [], 0
        else:
            group, self.pending = self.pending, []
        self.pending_bytes = 0
        return group

    def _packed(self, part: list[Any], est: float) -> list[Group]:
        full: list[Group] = [self._flush()] if self.pending else []
        start = 0
        while start < len(part):
            n = min(max(self.flush_items - self.packed, 1), len(part) - start)
            blob = orjson.dumps(part[start : start + n])
            start += n
            self.pieces.append(blob)
            self.packed += n
            self.pending_bytes += len(blob) - n - 1  # the brackets and commas are no input's
            if self.packed >= self.flush_items:
                full.append(_pack(self.pieces, self.packed, self.pending_bytes, est))
                self.pieces, self.packed, self.pending_bytes = [], 0, 0
        return full

    def _singles(self, part: list[Any]) -> list[Group]:
        full: list[Group] = [self._flush()] if self.pieces else []
        cost, dumps = self.cost, codec.dumps
        flat_est = self.flat_est
        for rec in part:
            blob = dumps(rec)
            self.pending_bytes += len(blob)
            est = flat_est if flat_est is not None else cost.estimate_item([rec])
            self.pending.append(StagedItem(1, blob, est))
            if len(self.pending) >= self.flush_items:
                full.append(self._flush())
        return full

    def _multiples(self, part: list[Any]) -> list[Group]:
        carry, rpi = self.carry, self.rpi
        carry.extend(part)
        start = 0
        while len(carry) - start >= rpi:
            chunk = carry[start : start + rpi]
            start += rpi
            blob = codec.dumps(chunk)
            self.pending_bytes += len(blob)
            self.pending.append(StagedItem(rpi, blob, self.cost.estimate_item(chunk)))
        del carry[:start]
        return []


def _containers(part: list[Any]) -> bool:
    return set(map(type, part)) <= _CONTAINERS


def _pack(pieces: list[bytes], count: int, size: int, est: float) -> PackedItems:
    inputs = b"[" + b",".join([p[1:-1] for p in pieces]) + b"]"
    return PackedItems(count=count, inputs=inputs, size=size, est_usd=est,
                       est_total=sum(itertools.repeat(est, count)))
