"""BatchManager: one method per business operation, over the Store interface."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from batchd.core import keys, quotas
from batchd.core.quotas import Limits, Metering
from batchd.domain import codec, errors
from batchd.domain.models import (
    ApiKey,
    Batch,
    BatchSpec,
    Item,
    Principal,
    Role,
    Tier,
    item_public_id,
    item_rowid,
    new_id,
)
from batchd.domain.states import StopReason
from batchd.store.base import (
    BatchQuery,
    BatchTotals,
    ExportPage,
    ExportRow,
    StagedItem,
    Store,
)
from batchd.store.webhooks import WebhookAttempt, WebhookMessage
from batchd.tasks.catalog import TaskCatalog
from batchd.tasks.registry import TaskDef, TaskRegistry

Clock = Callable[[], float]


@dataclass(slots=True)
class Created:
    batch: Batch
    replayed: bool = False


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


RecordRow = dict[str, Any]
"""One record of the results export: ``{item_id, seq, status, input, output, error}``."""

# Ingest stages items in groups of at most this many bytes, so a large upload is
# never held in memory whole.
STAGE_BYTES = 4 * 1024 * 1024
# Export reads this many records' worth of items per page.
EXPORT_PAGE_RECORDS = 8192


class BatchManager:
    """Business operations shared by every dialect.

    Args:
        store: durable state.
        registry: the tasks batches may use.
        clock: seconds since the epoch (injected in tests).
        on_new_work: called after items become runnable (wakes a local worker).
        tiers: the limits of each tier (:data:`batchd.core.quotas.DEFAULT_TIERS` if None).
        catalog: tasks defined over the API, looked up when ``registry`` lacks a name.
    """

    def __init__(
        self, *, store: Store, registry: TaskRegistry, clock: Clock = time.time,
        on_new_work: Callable[[], None] | None = None, ingest_flush_items: int = 5000,
        max_items_per_request: int = 10_000_000, tiers: Mapping[str, Limits] | None = None,
        catalog: TaskCatalog | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.catalog = catalog
        self.clock = clock
        self.tiers = dict(tiers or quotas.DEFAULT_TIERS)
        self.on_new_work = on_new_work
        self.ingest_flush_items = ingest_flush_items
        self.max_items_per_request = max_items_per_request

    # keys and tenants
    async def bootstrap_admin(self, admin_key: str | None) -> str | None:
        """Make sure an admin key exists; returns a newly generated key to print once."""
        tenant = await self.store.ensure_tenant("default", tier=Tier.ENTERPRISE, now=self.clock())
        if admin_key:
            await self.store.create_key(
                key_id=new_id("key"), tenant_id=tenant.id, key_hash=keys.hash_key(admin_key),
                prefix=keys.display_prefix(admin_key), role=Role.ADMIN, tier=Tier.ENTERPRISE,
                owner="admin", now=self.clock(),
            )
            return None
        if await self.store.count_keys(role=Role.ADMIN):
            return None
        raw = keys.generate_key()
        await self.store.create_key(
            key_id=new_id("key"), tenant_id=tenant.id, key_hash=keys.hash_key(raw),
            prefix=keys.display_prefix(raw), role=Role.ADMIN, tier=Tier.ENTERPRISE,
            owner="admin", now=self.clock(),
        )
        return raw

    async def authenticate(self, raw_key: str | None) -> Principal:
        if not raw_key:
            raise errors.Unauthorized("an API key is required")
        found = await self.store.key_by_hash(keys.hash_key(raw_key))
        if found is None or not keys.matches(raw_key, found[1]):
            raise errors.Unauthorized("the API key is not valid")
        k = found[0]
        return Principal(
            key_id=k.id, tenant_id=k.tenant_id, tenant_name=k.tenant_name, role=k.role,
            tier=k.tier, owner=k.owner, limits=k.limits,
        )

    async def create_tenant(self, admin: Principal, name: str, *, tier: str) -> Any:
        _require_admin(admin)
        return await self.store.ensure_tenant(name, tier=tier, now=self.clock())

    async def create_key(
        self, admin: Principal, *, tenant: str, role: str, tier: str | None, owner: str | None,
        limits: dict[str, float] | None = None,
    ) -> tuple[ApiKey, str]:
        _require_admin(admin)
        t = await self.store.ensure_tenant(tenant, tier=tier or Tier.FREE, now=self.clock())
        raw = keys.generate_key()
        key_id = new_id("key")
        key = ApiKey(
            id=key_id, tenant_id=t.id, tenant_name=t.name, role=role, tier=tier or t.tier,
            owner=owner or key_id, prefix=keys.display_prefix(raw), created_at=self.clock(),
            limits=limits or None,
        )
        await self.store.create_key(
            key_id=key.id, tenant_id=t.id, key_hash=keys.hash_key(raw), prefix=key.prefix,
            role=role, tier=key.tier, owner=key.owner, now=key.created_at, limits=key.limits,
        )
        return key, raw

    async def list_keys(self, admin: Principal) -> list[ApiKey]:
        _require_admin(admin)
        return await self.store.list_keys(None)

    async def revoke_key(self, admin: Principal, key_id: str) -> None:
        _require_admin(admin)
        if not await self.store.revoke_key(key_id, now=self.clock()):
            raise errors.NotFound("key not found")

    # tasks
    def task(self, name: str, version: str | None = None) -> TaskDef:
        return self.registry.get(name, version)

    async def find_task(self, name: str, version: str | None = None) -> TaskDef:
        """The task, including one defined over the API through another server."""
        if self.catalog is None:
            return self.registry.get(name, version)
        return await self.catalog.get(name, version)

    async def define_task(self, principal: Principal, data: dict[str, Any]) -> TaskDef:
        """Store and register a task of kind ``python``, ``http`` or ``llm`` (admin only)."""
        _require_admin(principal)
        if self.catalog is None:
            raise errors.Conflict("this server keeps no task definitions")
        return await self.catalog.create(data, tenant_id=principal.tenant_id, now=self.clock())

    # batches
    def resolve_spec(self, spec: BatchSpec) -> BatchSpec:
        """Fill a spec's defaults from its task; raises NotFound / InvalidInput."""
        task = self.registry.get(spec.task, spec.version or None)
        spec.version = task.version
        if spec.runner is not None and spec.runner not in task.runners:
            raise errors.InvalidInput(
                f"task {task.name!r} has no runner {spec.runner!r}; "
                f"known: {sorted(task.runners)}",
                details=[
                    {"loc": ["body", "runner"], "msg": "unknown runner", "type": "value_error"}
                ],
            )
        return spec

    async def create_batch(
        self, principal: Principal, spec: BatchSpec, records: AsyncIterator[list[Any]], *,
        idempotency_key: str | None = None,
        request_hash: str | Callable[[], str] | None = None,
        metering: Metering | None = None,
    ) -> Created:
        """Create a batch and ingest its records; nothing is visible unless all succeed.

        ``request_hash`` may be a function, called once the records are consumed.
        ``metering`` is applied, and its quotas checked, in the transaction that commits.
        """
        spec = self.resolve_spec(spec)
        task = self.registry.get(spec.task, spec.version)
        spec.est_usd_per_record = task.cost_for(spec.runner).per_record_usd
        batch_id = new_id("bat")
        now = self.clock()
        await self.store.create_batch(
            batch_id=batch_id, tenant_id=principal.tenant_id, owner=principal.owner, spec=spec,
            now=now,
        )
        stage = self._stage_token()
        try:
            await self._ingest(batch_id, stage, task, spec, records)
            if callable(request_hash):
                request_hash = request_hash()
            holder = await self.store.commit_stage(
                batch_id, stage, close=spec.close, now=self.clock(),
                idempotency_key=idempotency_key, request_hash=request_hash, metering=metering,
            )
        except BaseException:
            await asyncio.shield(self.store.discard_stage(batch_id, stage, drop_batch=True))
            raise
        if holder != batch_id:
            return await self._replay(principal, holder, request_hash)
        self._notify()
        return Created(batch=await self._get(principal, batch_id))

    async def create_runs(
        self, principal: Principal, spec: BatchSpec, runs: list[Run], *,
        webhook_event: str | None = None, idempotency_key: str | None = None,
        request_hash: str | None = None, metering: Metering | None = None,
    ) -> Created:
        """Create a closed batch of one item per run, each with its own runner and webhook
        (an event of type ``webhook_event``); every run is checked before anything is stored.

        Raises:
            errors.InvalidRecord: a run's input fails the task's schema, or it names an
                unknown runner (``index`` says which run).
        """
        spec = self.resolve_spec(spec)
        task = self.registry.get(spec.task, spec.version)
        self._check_records(task, [r.input for r in runs], 0)
        spec.records_per_item, spec.close = 1, True
        spec.est_usd_per_record = task.cost_for(spec.runner).per_record_usd
        items = [self._run_item(task, spec, i, r, webhook_event) for i, r in enumerate(runs)]
        batch_id = new_id("bat")
        await self.store.create_batch(
            batch_id=batch_id, tenant_id=principal.tenant_id, owner=principal.owner, spec=spec,
            now=self.clock(),
        )
        stage = self._stage_token()
        try:
            for start in range(0, len(items), self.ingest_flush_items):
                await self.store.stage_items(
                    batch_id, stage, items[start : start + self.ingest_flush_items]
                )
            holder = await self.store.commit_stage(
                batch_id, stage, close=True, now=self.clock(), idempotency_key=idempotency_key,
                request_hash=request_hash, metering=metering,
            )
        except BaseException:
            await asyncio.shield(self.store.discard_stage(batch_id, stage, drop_batch=True))
            raise
        if holder != batch_id:
            return await self._replay(principal, holder, request_hash)
        self._notify()
        return Created(batch=await self._get(principal, batch_id))

    @staticmethod
    def _run_item(
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
        batch = await self._get(principal, batch_id)
        if batch.request_hash != request_hash:
            raise errors.InvalidInput(
                "this Idempotency-Key was already used with a different request",
                details=[{
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "key reused with a different request body",
                    "type": "idempotency_mismatch",
                }],
            )
        return Created(batch=batch, replayed=True)

    async def append_items(
        self, principal: Principal, batch_id: str, records: AsyncIterator[list[Any]]
    ) -> Batch:
        batch = await self._get(principal, batch_id)
        if batch.status != "open" or batch.stop_reason:
            raise errors.Conflict(f"batch is {batch.status} and accepts no more items")
        task = self.registry.get(batch.task, batch.version)
        spec = BatchSpec(
            task=batch.task, version=batch.version, runner=batch.runner,
            records_per_item=batch.records_per_item,
        )
        stage = self._stage_token()
        try:
            await self._ingest(batch_id, stage, task, spec, records)
            await self.store.commit_stage(batch_id, stage, close=False, now=self.clock())
        except BaseException:
            await asyncio.shield(self.store.discard_stage(batch_id, stage, drop_batch=False))
            raise
        self._notify()
        return await self._get(principal, batch_id)

    async def add_chunks(
        self, principal: Principal, batch_id: str, chunks: list[Chunk], *,
        tenant_input_limit: int | None = None,
    ) -> Batch:
        """Append whole chunks (one item each) to an open batch, all or nothing.

        Raises:
            errors.Conflict: the batch is not open.
            quotas.InputBufferFull: the chunks do not fit the input buffer; none is stored.
        """
        batch = await self._get(principal, batch_id)
        if batch.status != "open" or batch.stop_reason:
            raise errors.Conflict(f"batch is {batch.status} and accepts no more chunks")
        task = self.registry.get(batch.task, batch.version)
        cost = task.cost_for(batch.runner)
        items = []
        offset = 0
        for chunk in chunks:
            if task.input_schema is not None and task.validate_input:
                self._check_records(task, chunk.records, offset)
            offset += len(chunk.records)
            items.append(StagedItem(
                n_records=len(chunk.records), input=codec.dumps(chunk.records),
                est_usd=cost.estimate_item(chunk.records), ext_id=chunk.ext_id,
                meta=None if chunk.meta is None else codec.dumps(chunk.meta),
            ))
        stage = self._stage_token()
        try:
            if items:
                await self.store.stage_items(batch_id, stage, items)
            await self.store.commit_stage(
                batch_id, stage, close=False, now=self.clock(),
                tenant_input_limit=tenant_input_limit,
            )
        except BaseException:
            await asyncio.shield(self.store.discard_stage(batch_id, stage, drop_batch=False))
            raise
        self._notify()
        return await self._get(principal, batch_id)

    async def take_results(
        self, principal: Principal, batch_id: str, *, max_items: int
    ) -> tuple[Batch, list[ExportRow]]:
        """Hand out finished results of a ``deliver`` batch, freeing its output buffer."""
        batch = await self._get(principal, batch_id)
        if batch.status == "cancelled":
            return batch, []  # nothing is handed out after a cancel
        rows = await self.store.take_results(batch_id, limit=max_items, now=self.clock())
        if rows:
            self._notify()  # a batch paused on a full output buffer may run again
        return await self._get(principal, batch_id), rows

    async def _ingest(
        self, batch_id: str, stage: str, task: TaskDef, spec: BatchSpec,
        records: AsyncIterator[list[Any]],
    ) -> None:
        # One write in flight while the next group is prepared, so parsing and the
        # database's inserts overlap.
        in_flight: asyncio.Future[None] | None = None

        async def stage_group(items: list[StagedItem]) -> None:
            nonlocal in_flight
            if in_flight is not None:
                await in_flight
            in_flight = asyncio.ensure_future(self.store.stage_items(batch_id, stage, items))

        try:
            async for group in self._item_groups(task, spec, records):
                await stage_group(group)
        except BaseException:
            if in_flight is not None:
                # Settle the last write before the caller discards the upload.
                await asyncio.gather(in_flight, return_exceptions=True)
            raise
        if in_flight is not None:
            await in_flight

    async def _item_groups(
        self, task: TaskDef, spec: BatchSpec, records: AsyncIterator[list[Any]]
    ) -> AsyncIterator[list[StagedItem]]:
        """Checked records cut into items, in groups bounded by count and bytes."""
        cost = task.cost_for(spec.runner)
        rpi = spec.records_per_item
        if rpi < 1:
            # A chunked batch (records_per_item 0) takes whole chunks via add_chunks.
            async for part in records:
                if part:
                    raise errors.InvalidInput("this batch takes its records in chunks")
            return
        check = task.input_schema is not None and task.validate_input
        flat = cost.is_flat
        dumps = codec.dumps
        pending: list[StagedItem] = []
        pending_bytes = 0
        carry: list[Any] = []
        index = 0
        for_flush = self.ingest_flush_items
        async for part in records:
            if check:
                self._check_records(task, part, index)
            index += len(part)
            if index > self.max_items_per_request * rpi:
                raise errors.LimitExceeded(
                    f"a request may carry at most {self.max_items_per_request} items"
                )
            if rpi == 1:
                for rec in part:
                    est = (
                        cost.per_record_usd + cost.per_item_usd
                        if flat
                        else cost.estimate_item([rec])
                    )
                    blob = dumps(rec)
                    pending_bytes += len(blob)
                    pending.append(StagedItem(1, blob, est))
                    if len(pending) >= for_flush:
                        yield pending
                        pending, pending_bytes = [], 0
            else:
                carry.extend(part)
                start = 0
                while len(carry) - start >= rpi:
                    chunk = carry[start : start + rpi]
                    start += rpi
                    blob = dumps(chunk)
                    pending_bytes += len(blob)
                    pending.append(StagedItem(rpi, blob, cost.estimate_item(chunk)))
                del carry[:start]
            if len(pending) >= for_flush or pending_bytes >= STAGE_BYTES:
                yield pending
                pending, pending_bytes = [], 0
        if carry:
            pending.append(StagedItem(len(carry), dumps(carry), cost.estimate_item(carry)))
        if pending:
            yield pending

    @staticmethod
    def _check_records(task: TaskDef, part: list[Any], index: int) -> None:
        for offset, rec in enumerate(part):
            problem = task.input_errors(rec)
            if problem:
                where = index + offset
                raise errors.InvalidRecord(
                    f"item {where}: {problem}", index=where, problem=problem,
                    details=[{"loc": ["body", "items", where], "msg": problem,
                              "type": "schema_error"}],
                )

    def _stage_token(self) -> str:
        return f"{int(self.clock())}-{secrets.token_hex(6)}"

    def _notify(self) -> None:
        if self.on_new_work is not None:
            self.on_new_work()

    async def _get(self, principal: Principal, batch_id: str) -> Batch:
        batch = await self.store.get_batch(batch_id, tenant_id=principal.tenant_id)
        if batch is None or not _may_see(principal, batch):
            raise errors.NotFound(f"batch {batch_id} not found")
        return batch

    async def get_batch(self, principal: Principal, batch_id: str) -> Batch:
        return await self._get(principal, batch_id)

    async def list_batches(
        self, principal: Principal, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Batch], str | None]:
        before = _decode_cursor(cursor, "b")
        rows = await self.store.list_batches(
            tenant_id=principal.tenant_id,
            owner=None if principal.sees_all_of_tenant else principal.owner,
            status=status, before_pk=before, limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (f"b{rows[-1].pk}" if more and rows else None)

    async def close_batch(self, principal: Principal, batch_id: str) -> Batch:
        batch = await self._get(principal, batch_id)
        if batch.status != "open":
            return batch  # closing twice is not an error
        await self.store.close_batch(batch_id, now=self.clock())
        return await self._get(principal, batch_id)

    async def cancel_batch(
        self, principal: Principal, batch_id: str, reason: str | None, *,
        cancel_running: bool = True, metering: Metering | None = None,
    ) -> Batch:
        """Cancel queued items now and, with ``cancel_running``, the running ones too.

        ``metering`` is applied in the same transaction, even if the batch had ended.
        """
        batch = await self._get(principal, batch_id)
        if not batch.is_terminal or metering is not None:
            await self.store.stop_batch(
                batch_id, reason=StopReason.CANCELLED, detail=reason, now=self.clock(),
                cancel_running=cancel_running, metering=metering,
            )
        return await self._get(principal, batch_id)

    async def batch_for(
        self, principal: Principal, batch_id: str, *, task: str | None = None
    ) -> Batch:
        """The batch, for dialects that tell "not yours" (Forbidden) from "missing".

        Another tenant's batch, or one of another task than ``task``, is missing.
        """
        batch = await self.store.get_batch(batch_id, tenant_id=principal.tenant_id)
        if batch is None or (task is not None and batch.task != task):
            raise errors.NotFound(f"batch {batch_id} not found")
        if not _may_see(principal, batch):
            raise errors.Forbidden(f"batch {batch_id} belongs to another user")
        return batch

    def batch_query(self, principal: Principal, **filters: Any) -> BatchQuery:
        """A query over the batches ``principal`` may see, narrowed by ``filters``."""
        owner = None if principal.sees_all_of_tenant else principal.owner
        return BatchQuery(tenant_id=principal.tenant_id, owner=owner, **filters)

    async def page_batches(
        self, principal: Principal, *, offset: int, limit: int, **filters: Any
    ) -> tuple[list[Batch], int]:
        return await self.store.query_batches(
            self.batch_query(principal, **filters), offset=offset, limit=limit
        )

    async def batch_totals(self, principal: Principal, **filters: Any) -> list[BatchTotals]:
        return await self.store.batch_totals(self.batch_query(principal, **filters))

    async def list_items(
        self, principal: Principal, batch_id: str, *, status: str | None, cursor: str | None,
        limit: int,
    ) -> tuple[list[Item], str | None]:
        await self._get(principal, batch_id)
        after = _decode_cursor(cursor, "s")
        rows = await self.store.list_items(
            batch_id, status=status, after_seq=-1 if after is None else after, limit=limit + 1
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (f"s{rows[-1].seq}" if more and rows else None)

    async def items_of(self, batch: Batch) -> list[Item]:
        """Every item of a batch the caller was given (a small one: all in one read)."""
        return await self.store.list_items(
            batch.id, status=None, after_seq=-1, limit=max(1, batch.n_total)
        )

    async def get_item(self, principal: Principal, batch_id: str, item_id: str) -> Item:
        await self._get(principal, batch_id)
        rowid = item_rowid(item_id)
        item = await self.store.get_item(batch_id, rowid) if rowid is not None else None
        if item is None:
            raise errors.NotFound(f"item {item_id} not found")
        return item

    async def iter_results(
        self, principal: Principal, batch_id: str
    ) -> AsyncIterator[list[RecordRow]]:
        """Finished records in order, a page of items at a time."""
        batch = await self._get(principal, batch_id)
        multi = batch.records_per_item != 1
        page = max(1, min(512, EXPORT_PAGE_RECORDS // batch.records_per_item))
        after = -1
        while True:
            rows = await self.store.export_rows(batch_id, after_seq=after, limit=page)
            if not rows:
                return
            yield [r for row in rows for r in _records_of(row, multi)]
            after = rows[-1].seq
            if len(rows) < page:
                return

    async def item_at(self, principal: Principal, item_id: str) -> tuple[Batch, Item]:
        """An item found by its id alone, with its batch."""
        rowid = item_rowid(item_id)
        batch_id = (
            await self.store.item_batch(rowid, tenant_id=principal.tenant_id)
            if rowid is not None else None
        )
        if batch_id is None:
            raise errors.NotFound(f"item {item_id} not found")
        batch = await self._get(principal, batch_id)
        return batch, await self.get_item(principal, batch_id, item_id)

    async def item_ids_by_status(
        self, batch: Batch, statuses: tuple[str, ...], *, page: int = 5000
    ) -> AsyncIterator[list[str]]:
        """The public ids of a batch's items in ``statuses``, in order, a page at a time."""
        after = -1
        while True:
            keys = await self.store.item_keys(batch.id, statuses=statuses, after_seq=after,
                                              limit=page)
            if keys:
                yield [item_public_id(rowid) for _, rowid in keys]
            if len(keys) < page:
                return
            after = keys[-1][0]

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
            batch = await self._get(principal, batch_id)
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

    # webhooks
    async def webhook_messages(
        self, principal: Principal, *, batch_id: str | None, status: str | None,
        cursor: str | None, limit: int,
    ) -> tuple[list[WebhookMessage], str | None]:
        """The outbox's messages the caller may see, newest first."""
        if batch_id is not None:
            await self._get(principal, batch_id)
        rows = await self.store.list_webhooks(
            tenant_id=principal.tenant_id,
            owner=None if principal.sees_all_of_tenant else principal.owner,
            batch_id=batch_id, status=status, before_pk=_decode_cursor(cursor, "w"),
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (f"w{rows[-1].pk}" if more and rows else None)

    async def webhook_message(
        self, principal: Principal, message_id: str
    ) -> tuple[WebhookMessage, list[WebhookAttempt]]:
        """A message and its delivery log."""
        message = await self.store.get_webhook(
            message_id, tenant_id=principal.tenant_id,
            owner=None if principal.sees_all_of_tenant else principal.owner,
        )
        if message is None:
            raise errors.NotFound(f"webhook message {message_id} not found")
        return message, await self.store.webhook_attempts(message.pk)

    async def webhook_secret(self, principal: Principal, *, candidate: str,
                             rotate: bool = False) -> str:
        """The tenant's signing secret (made on first use); rotating needs a supervisor."""
        if rotate and not principal.sees_all_of_tenant:
            raise errors.Forbidden("rotating the webhook secret needs a supervisor or admin key")
        return await self.store.webhook_secret(principal.tenant_id, candidate=candidate,
                                               rotate=rotate)

    # tiers and quotas
    def limits_for(self, principal: Principal) -> Limits:
        """The caller's limits: its key's tier, then the key's own overrides."""
        return quotas.limits_for(principal.tier, principal.limits, tiers=self.tiers)

    async def meter(self, metering: Metering) -> None:
        """Count a request that changes nothing else, checking its quotas first.

        Raises:
            errors.QuotaExceeded: a quota would be passed; nothing was counted.
        """
        await self.store.meter(metering, now=self.clock())


def _records_of(row: ExportRow, multi: bool) -> list[RecordRow]:
    iid = item_public_id(row.rowid)
    loads = orjson.loads
    if not multi:
        out = loads(row.output) if row.output is not None else None
        return [{"item_id": iid, "seq": row.seq, "status": row.status,
                 "input": loads(row.input), "output": out, "error": row.error}]
    inputs = loads(row.input)
    outputs = loads(row.output) if row.output is not None else [None] * len(inputs)
    rec_errors = (row.error or {}).get("records") if row.status == "succeeded" else None
    shared_error = row.error if row.status != "succeeded" else None
    seq = row.rec0
    result = []
    for i, (inp, out) in enumerate(zip(inputs, outputs, strict=False)):
        if rec_errors is not None and rec_errors[i]:
            status, err = "failed", rec_errors[i]
        else:
            status, err = row.status, shared_error
        result.append({"item_id": iid, "seq": seq + i, "status": status, "input": inp,
                       "output": out, "error": err})
    return result


def _decode_cursor(cursor: str | None, kind: str) -> int | None:
    if not cursor:
        return None
    digits = cursor[1:]
    if cursor[0] != kind or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise errors.InvalidInput(
            "invalid cursor",
            details=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        )
    return int(digits)


def _may_see(principal: Principal, batch: Batch) -> bool:
    return principal.sees_all_of_tenant or batch.owner == principal.owner


def _require_admin(principal: Principal) -> None:
    if principal.role != Role.ADMIN:
        raise errors.Forbidden("this needs an admin key")
