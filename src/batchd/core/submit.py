"""Creating batches and adding items: stage, decide admission, then commit or discard.

Every dialect's submissions pass the same checks here: the key's tier batch size,
the month's item and cost quotas (metered in the transaction that commits the
items), the batch's own budget cap, and the tenant's output buffers (backpressure)
for chunks.

**One budget rule for every dialect:** a batch whose estimated cost (the items it
holds and the upload's, each priced by its task's cost model) is above its budget
cap is refused before anything of the upload is kept (``errors.OverBudget``, naming
the estimate and the cap); a streamed upload stops at the first group that passes
it. The cap still bounds what runs (dispatch reserves each item's estimate), for
the cost that estimates do not foresee.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchd.core import chunking, quotas, staging, usage
from batchd.core.access import Access
from batchd.core.quotas import Metering
from batchd.core.staging import Chunk, Run, Tally
from batchd.core.taskset import TaskSet
from batchd.domain import errors
from batchd.domain.models import Batch, BatchSpec, Principal, new_id
from batchd.domain.records import StagedItem
from batchd.tasks.registry import TaskDef

if TYPE_CHECKING:
    from batchd.core.db import Database


@dataclass(slots=True)
class Created:
    batch: Batch
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    """How a dialect submits: ``call`` is the metering of the API call itself (for
    dialects that count calls)."""

    call: Metering | None = None


@dataclass(slots=True)
class _Upload:
    """One upload in progress: its batch, stage token and what it holds so far."""

    principal: Principal
    batch_id: str
    stage: str
    held: int  # items the batch held before this upload
    tally: Tally
    budget_usd: float | None = None  # the batch's cap
    held_usd: float = 0.0  # the estimated cost of what the batch held before this upload

    def check_budget(self) -> None:
        """Raises OverBudget once the batch's estimate with this upload passes its cap."""
        over = quotas.over_budget(self.held_usd + self.tally.est_usd, self.budget_usd)
        if over is not None:
            raise over


class Submissions:
    """Batch creation and item uploads, all or nothing."""

    def __init__(
        self, *, store: Database, access: Access, tasks: TaskSet, clock: Callable[[], float],
        notify: Callable[[], None], flush_items: int, max_items_per_request: int,
    ) -> None:
        self.store = store
        self.access = access
        self.tasks = tasks
        self.clock = clock
        self.notify = notify
        self.flush_items = flush_items
        self.max_items_per_request = max_items_per_request

    def check_batch_size(self, principal: Principal, size: int) -> None:
        """Raises BatchTooLarge if a batch of ``size`` items is past the key's tier."""
        too_large = quotas.batch_too_large(
            size, self.access.limits_for(principal), tier=principal.tier
        )
        if too_large is not None:
            raise too_large

    async def create_batch(
        self, principal: Principal, spec: BatchSpec, records: AsyncIterator[list[Any]], *,
        idempotency_key: str | None = None,
        request_hash: str | Callable[[], str] | None = None,
        admission: Admission = Admission(), auto_records_per_item: bool = False,
    ) -> Created:
        """Create a batch and ingest its records; nothing is visible unless all succeed.

        ``request_hash`` may be a function, called once the records are consumed.
        ``auto_records_per_item``: the caller named no ``records_per_item``; the engine
        chooses it for the task (:mod:`batchd.core.chunking`) from the first records.

        Raises:
            errors.OverBudget: the batch's estimated cost is above its ``budget_usd``.
        """
        spec = self.tasks.resolve_spec(spec)
        task = self.tasks.task(spec.task, spec.version)
        spec.est_usd_per_record = task.cost_for(spec.runner).per_record_usd
        if auto_records_per_item:
            records = await _sized(spec, records, vectorised=task.vectorised)
        groups = self._groups(task, spec, records)
        try:
            # The first group is read before anything is written: a body that is bad from
            # its start is refused without a write, however much of it is still to come.
            first = await anext(groups, None)
            up = await self._new_batch(principal, spec)
        except BaseException:
            await groups.aclose()
            raise

        async def fill() -> None:
            await self._ingest(up, groups, first)

        def request() -> str | None:
            return request_hash() if callable(request_hash) else request_hash

        holder = await self._commit(
            up, fill, close=spec.close, drop_batch=True, admission=admission,
            idempotency_key=idempotency_key, request_hash=request,
        )
        return await self._created(principal, holder, up.batch_id, request())

    async def create_runs(
        self, principal: Principal, spec: BatchSpec, runs: list[Run], *,
        webhook_event: str | None = None, idempotency_key: str | None = None,
        request_hash: str | None = None, admission: Admission = Admission(),
    ) -> Created:
        """Create a closed batch of one item per run, each with its own runner and webhook
        (an event of type ``webhook_event``); every run is checked before anything is stored.

        Raises:
            errors.InvalidRecord: a run's input fails the task's schema, or it names an
                unknown runner (``index`` says which run).
        """
        spec = self.tasks.resolve_spec(spec)
        task = self.tasks.task(spec.task, spec.version)
        staging.check_records(task, [r.input for r in runs], 0)
        spec.records_per_item, spec.close = 1, True
        spec.est_usd_per_record = task.cost_for(spec.runner).per_record_usd
        items = [staging.run_item(task, spec, i, r, webhook_event) for i, r in enumerate(runs)]
        self.check_batch_size(principal, len(items))
        up = await self._new_batch(principal, spec)

        async def fill() -> None:
            for start in range(0, len(items), self.flush_items):
                await self._stage(up, items[start : start + self.flush_items])

        holder = await self._commit(
            up, fill, close=True, drop_batch=True, admission=admission,
            idempotency_key=idempotency_key, request_hash=lambda: request_hash,
        )
        return await self._created(principal, holder, up.batch_id, request_hash)

    async def append_items(
        self, principal: Principal, batch_id: str, records: AsyncIterator[list[Any]], *,
        admission: Admission = Admission(),
    ) -> Batch:
        batch = await self._open_batch(principal, batch_id, "items")
        task = self.tasks.task(batch.task, batch.version)
        spec = BatchSpec(
            task=batch.task, version=batch.version, runner=batch.runner,
            records_per_item=batch.records_per_item,
        )
        up = self._append_upload(principal, batch)

        async def fill() -> None:
            await self._ingest(up, self._groups(task, spec, records))

        await self._commit(up, fill, close=False, drop_batch=False, admission=admission)
        self.notify()
        return await self.access.batch(principal, batch_id)

    async def add_chunks(
        self, principal: Principal, batch_id: str, chunks: list[Chunk], *,
        tenant_input_limit: int | None = None, tenant_output_limit: int | None = None,
        admission: Admission = Admission(),
    ) -> Batch:
        """Append whole chunks (one item each) to an open batch, all or nothing.

        Raises:
            quotas.OutputBufferFull: the tenant's output buffers are full (backpressure).
            errors.Conflict: the batch is not open.
            quotas.InputBufferFull: the chunks do not fit the input buffer; none is stored.
        """
        batch = await self.access.batch(principal, batch_id)
        if tenant_output_limit:
            _, used = await self.store.tenant_buffers(principal.tenant_id)
            full = quotas.output_buffer_full(tenant_used=used, tenant_limit=tenant_output_limit)
            if full is not None:
                raise full
        batch = await self._open_batch(principal, batch_id, "chunks", batch)
        task = self.tasks.task(batch.task, batch.version)
        items = staging.chunk_items(task, batch.runner, chunks)
        await self.append_staged(principal, batch, items, what="chunks", admission=admission,
                                 tenant_input_limit=tenant_input_limit)
        return await self.access.batch(principal, batch_id)

    async def append_staged(
        self, principal: Principal, batch: Batch, items: list[StagedItem], *, what: str,
        admission: Admission = Admission(), tenant_input_limit: int | None = None,
    ) -> None:
        """Append ready-made ``items`` to ``batch`` (as read by the caller), all or nothing.

        Raises:
            errors.Conflict: the batch is not open (it accepts no more ``what``).
        """
        batch = await self._open_batch(principal, batch.id, what, batch)
        self.check_batch_size(principal, batch.n_total + len(items))
        up = self._append_upload(principal, batch)

        async def fill() -> None:
            if items:
                await self._stage(up, items)

        await self._commit(up, fill, close=False, drop_batch=False, admission=admission,
                           tenant_input_limit=tenant_input_limit)
        self.notify()

    async def idempotency_key_used(self, principal: Principal, idempotency_key: str) -> bool:
        found = await self.store.find_batch_by_idempotency(principal.tenant_id, idempotency_key)
        return found is not None

    async def replay_if_known(
        self, principal: Principal, idempotency_key: str, request_hash: str
    ) -> Created | None:
        existing = await self.store.find_batch_by_idempotency(principal.tenant_id, idempotency_key)
        if existing is None:
            return None
        return await self._replay(principal, existing.id, request_hash)

    async def _replay(
        self, principal: Principal, batch_id: str, request_hash: str | None
    ) -> Created:
        batch = await self.access.batch(principal, batch_id)
        if batch.request_hash != request_hash:
            raise errors.InvalidInput(
                "this Idempotency-Key was already used with a different request",
                details={"field": "idempotency_key", "kind": "idempotency_mismatch",
                         "problem": "key reused with a different request body"},
            )
        return Created(batch=batch, replayed=True)

    async def _created(
        self, principal: Principal, holder: str, batch_id: str, request_hash: str | None
    ) -> Created:
        if holder != batch_id:
            return await self._replay(principal, holder, request_hash)
        self.notify()
        return Created(batch=await self.access.batch(principal, batch_id))

    async def _open_batch(
        self, principal: Principal, batch_id: str, what: str, batch: Batch | None = None
    ) -> Batch:
        batch = batch or await self.access.batch(principal, batch_id)
        if batch.status != "open" or batch.stop_reason:
            raise errors.Conflict(f"batch is {batch.status} and accepts no more {what}")
        return batch

    async def _new_batch(self, principal: Principal, spec: BatchSpec) -> _Upload:
        batch_id = new_id("bat")
        await self.store.create_batch(
            batch_id=batch_id, tenant_id=principal.tenant_id, owner=principal.owner, spec=spec,
            now=self.clock(),
        )
        return _Upload(principal, batch_id, self._stage_token(), 0, Tally(),
                       budget_usd=spec.budget_usd)

    def _append_upload(self, principal: Principal, batch: Batch) -> _Upload:
        return _Upload(principal, batch.id, self._stage_token(), batch.n_total, Tally(),
                       budget_usd=batch.budget_usd, held_usd=batch.est_usd)

    async def _commit(
        self, up: _Upload, fill: Callable[[], Awaitable[None]], *, close: bool,
        drop_batch: bool, admission: Admission,
        idempotency_key: str | None = None,
        request_hash: Callable[[], str | None] = lambda: None,
        tenant_input_limit: int | None = None,
    ) -> str:
        """Stage the upload with ``fill``, decide, and commit it (or discard it all).

        Either way, a large upload then has the store reclaim what its staging used, so
        that a refused one leaves no lasting disk cost."""
        try:
            await fill()
            metering = self._metering(up, admission)
            holder = await self.store.commit_stage(
                up.batch_id, up.stage, close=close, now=self.clock(),
                idempotency_key=idempotency_key, request_hash=request_hash(),
                tenant_input_limit=tenant_input_limit, metering=metering,
                limits=self.access.limits_for(up.principal), tier=up.principal.tier,
                staged_items=up.tally.items,
            )
        except BaseException:
            await asyncio.shield(self._discard(up, drop_batch=drop_batch))
            raise
        if up.tally.worth_reclaiming:
            await self.store.reclaim_space()
        return holder

    async def _discard(self, up: _Upload, *, drop_batch: bool) -> None:
        await self.store.discard_stage(up.batch_id, up.stage, drop_batch=drop_batch)
        if up.tally.worth_reclaiming:
            await self.store.reclaim_space()

    def _metering(self, up: _Upload, admission: Admission) -> Metering | None:
        """The upload's admission: the budget cap, then the quotas that its commit
        checks, with the call's own metering."""
        up.check_budget()
        limits = self.access.limits_for(up.principal)
        return usage.submit_metering(up.principal.tenant_id, limits, est_usd=up.tally.est_usd,
                                     call=admission.call)

    async def _stage(self, up: _Upload, items: list[StagedItem]) -> None:
        up.tally.add(items)
        self.check_batch_size(up.principal, up.held + up.tally.items)
        up.check_budget()
        await self.store.stage_items(up.batch_id, up.stage, items)

    def _groups(
        self, task: TaskDef, spec: BatchSpec, records: AsyncIterator[list[Any]]
    ) -> AsyncGenerator[staging.Group, None]:
        return staging.item_groups(task, spec, records, flush_items=self.flush_items,
                                   max_items=self.max_items_per_request)

    async def _ingest(
        self, up: _Upload, groups: AsyncGenerator[staging.Group, None],
        first: staging.Group | None = None,
    ) -> None:
        """Stage ``first`` (a group already taken from ``groups``), then ``groups``."""
        # One write in flight while the next group is prepared, so parsing and the
        # database's inserts overlap.
        in_flight: asyncio.Future[None] | None = None
        try:
            group = first if first is not None else await anext(groups, None)
            while group is not None:
                up.tally.add(group)
                self.check_batch_size(up.principal, up.held + up.tally.items)
                up.check_budget()
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.ensure_future(
                    self.store.stage_items(up.batch_id, up.stage, group)
                )
                group = await anext(groups, None)
        except BaseException:
            await groups.aclose()
            if in_flight is not None:
                # Settle the last write before the caller discards the upload.
                await asyncio.gather(in_flight, return_exceptions=True)
            raise
        if in_flight is not None:
            await in_flight

    def _stage_token(self) -> str:
        return f"{int(self.clock())}-{secrets.token_hex(6)}"


async def _sized(
    spec: BatchSpec, records: AsyncIterator[list[Any]], *, vectorised: bool
) -> AsyncIterator[list[Any]]:
    """Set ``spec.records_per_item`` for the task from the first records (read ahead,
    at most :data:`chunking.SAMPLE_RECORDS` of them); the same records, all of them."""
    head: list[list[Any]] = []
    n = size = 0
    complete = True
    if vectorised:
        async for part in records:
            head.append(part)
            n += len(part)
            # Each record as stored: the array's bytes less its brackets and commas.
            size += len(orjson.dumps(part)) - len(part) - 1 if part else 0
            if n >= chunking.SAMPLE_RECORDS:
                complete = False
                break
    sample = chunking.Sample(records=n, input_bytes=size, complete=complete)
    spec.records_per_item = chunking.records_per_item(vectorised=vectorised, sample=sample)
    return _chain(head, records) if head else records


async def _chain(
    head: list[list[Any]], rest: AsyncIterator[list[Any]]
) -> AsyncIterator[list[Any]]:
    for part in head:
        yield part
    async for part in rest:
        yield part
