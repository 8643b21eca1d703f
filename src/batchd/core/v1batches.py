"""Batches of model requests (``/v1/batches``, ``/v1/messages/batches``) over engine batches.

Each request is one item (one record) of the built-in task ``model_request``
(:mod:`batchd.tasks.upstream`); the engine schedules them by priority and fair share,
retries them, counts their tokens and cost, and expires what the completion window
leaves. A ``/v1`` batch is a row of ``v1_batches`` pointing at its engine batch, created
*validating*, then *in_progress* once its requests are in the engine (the engine batch's
idempotency key is the ``/v1`` batch's id), or *failed* with the input's problems.

batchd's own settings of a batch come from reserved ``metadata`` keys
(:data:`RESERVED`): ``batchd_priority`` (0–100), ``batchd_parallelism``,
``batchd_budget_usd``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchd.core import access
from batchd.core.manager import BatchManager
from batchd.core.txn.files import V1BatchRow
from batchd.domain import errors
from batchd.domain.models import BatchSpec, Principal
from batchd.domain.records import ExportRow
from batchd.tasks import upstream

if TYPE_CHECKING:
    from batchd.core.db import Database
    from batchd.settings import Settings

RESERVED = {"batchd_priority": "priority", "batchd_parallelism": "parallelism",
            "batchd_budget_usd": "budget_usd"}
MAX_LISTED_ERRORS = 100
RESULTS_PAGE = 1000


class InvalidRequests(Exception):
    """The batch's requests are not valid: ``problems`` in the dialect's own words."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class V1Page:
    batches: list[V1BatchRow]
    has_more: bool


def new_batch_id(dialect: str) -> str:
    prefix = "msgbatch_" if dialect == "anthropic" else "batch_"
    return prefix + secrets.token_hex(12)


def batch_settings(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """BatchSpec fields from reserved metadata keys; raises InvalidInput naming a bad one."""
    found: dict[str, Any] = {}
    for key, field in RESERVED.items():
        raw = (metadata or {}).get(key)
        if raw is None:
            continue
        try:
            value: Any = float(raw) if field == "budget_usd" else int(raw)
        except (TypeError, ValueError):
            raise errors.InvalidInput(f"metadata.{key} must be a number",
                                      details={"field": f"metadata.{key}"}) from None
        bad = (field == "priority" and not 0 <= value <= 100) or (
            field != "priority" and value <= 0)
        if bad:
            raise errors.InvalidInput(f"metadata.{key} is out of range",
                                      details={"field": f"metadata.{key}"})
        found[field] = value
    return found


class V1Batches:
    """Create, read, cancel and delete ``/v1`` batches of one dialect's callers."""

    def __init__(self, *, store: Database, manager: BatchManager, settings: Settings,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.manager = manager
        self.settings = settings
        self.clock = clock

    async def create(
        self, principal: Principal, *, dialect: str, records: AsyncIterator[list[Any]],
        endpoint: str, input_file_id: str | None, metadata: dict[str, Any] | None,
        completion_window: str = "24h", output_expires_s: float | None = None,
    ) -> V1BatchRow:
        """A batch of ``records`` (``{"custom_id", "url", "body"}``, in groups). If the
        records raise :class:`InvalidRequests`, the batch is stored as failed with them.
        ``output_expires_s``: its output files expire this long after they are written
        (None: as ``batch_output`` files do)."""
        now = self.clock()
        batch_id = new_batch_id(dialect)
        extra = batch_settings(metadata)
        pk = await self.store.insert_v1_batch(
            id=batch_id, tenant_id=principal.tenant_id, owner=principal.owner, dialect=dialect,
            engine_batch_id=None, input_file_id=input_file_id, endpoint=endpoint,
            completion_window=completion_window,
            metadata=orjson.dumps(metadata) if metadata is not None else None,
            status="validating", errors=None, created_at=now,
            expires_at=now + self.settings.v1_completion_window_s, in_progress_at=None,
            failed_at=None)
        fields: dict[str, Any] = {"parallelism": self.settings.default_parallelism, **extra}
        spec = BatchSpec(
            task=upstream.NAME, version=upstream.VERSION, records_per_item=1,
            max_attempts=self.settings.upstream_max_attempts,
            retry_backoff_s=self.settings.retry_backoff_s,
            expires_at=now + self.settings.v1_completion_window_s,
            metadata={**(metadata or {}), "v1": {
                "dialect": dialect, "id": batch_id,
                **({"output_expires_s": output_expires_s} if output_expires_s else {})}},
            dialect=dialect,
            **fields)
        try:
            created = await self.manager.create_batch(
                principal, spec, records, idempotency_key=batch_id, request_hash=batch_id)
        except InvalidRequests as exc:
            await self.store.fail_v1_batch(pk, errors=orjson.dumps(exc.problems),
                                           now=self.clock())
            return await self.get(principal, batch_id, dialect=dialect)
        except BaseException:
            await self.store.delete_v1_batch(pk)
            raise
        await self.store.start_v1_batch(pk, engine_batch_id=created.batch.id, now=self.clock())
        return await self.get(principal, batch_id, dialect=dialect)

    async def get(self, principal: Principal, batch_id: str, *, dialect: str) -> V1BatchRow:
        found = await self.store.v1_batch(batch_id, tenant_id=principal.tenant_id,
                                          dialect=dialect, owner=access.owner_scope(principal))
        if found is None:
            raise errors.NotFound(f"No batch found with id '{batch_id}'.",
                                  details={"id": batch_id})
        return found

    async def page(self, principal: Principal, *, dialect: str, after: str | None,
                   before: str | None, limit: int) -> V1Page:
        """Newest first; ``after``: older than that batch, ``before``: newer."""
        owner = access.owner_scope(principal)
        if before:
            cursor = (await self.get(principal, before, dialect=dialect)).pk
            rows = await self.store.v1_batches(
                tenant_id=principal.tenant_id, dialect=dialect, owner=owner, cursor_pk=cursor,
                limit=limit + 1, ascending=True)
            return V1Page(batches=list(reversed(rows[:limit])), has_more=len(rows) > limit)
        cursor = (await self.get(principal, after, dialect=dialect)).pk if after else 2**62
        rows = await self.store.v1_batches(
            tenant_id=principal.tenant_id, dialect=dialect, owner=owner, cursor_pk=cursor,
            limit=limit + 1, ascending=False)
        return V1Page(batches=rows[:limit], has_more=len(rows) > limit)

    async def cancel(self, principal: Principal, batch_id: str, *, dialect: str) -> V1BatchRow:
        """Cancel: queued requests at once, running ones cooperatively; what finished is
        kept. Cancelling an ended batch changes nothing."""
        found = await self.get(principal, batch_id, dialect=dialect)
        if await self.store.cancel_v1_batch(found.pk, now=self.clock()) and (
                found.engine_batch_id is not None):
            await self.manager.cancel_batch(principal, found.engine_batch_id,
                                            "cancelled through /v1")
        return await self.get(principal, batch_id, dialect=dialect)

    async def results(self, principal: Principal, batch_id: str, *, dialect: str
                      ) -> tuple[V1BatchRow, AsyncIterator[ExportRow]]:
        """An ended batch and its requests' results in order; raises Conflict before it
        has ended."""
        found = await self.get(principal, batch_id, dialect=dialect)
        if found.engine_batch_id is None or not found.engine_ended:
            raise errors.Conflict(f"Batch {batch_id} has not ended yet; its results are "
                                  "available once processing_status is 'ended'.")
        return found, self._rows(found.engine_batch_id)

    async def _rows(self, engine_batch_id: str) -> AsyncIterator[ExportRow]:
        last = await self.store.last_item_seq(engine_batch_id)
        after = -1
        while last is not None and after < last:
            upto = min(after + RESULTS_PAGE, last)
            for row in await self.store.export_rows_between(engine_batch_id, after_seq=after,
                                                            upto_seq=upto):
                yield row
            after = upto

    async def delete(self, principal: Principal, batch_id: str, *, dialect: str) -> V1BatchRow:
        """Forget an ended batch; raises Conflict while it runs."""
        found = await self.get(principal, batch_id, dialect=dialect)
        if not found.engine_ended and found.status != "failed":
            raise errors.Conflict(f"Batch {batch_id} cannot be deleted while it is processing; "
                                  "cancel it first and wait until it has ended.")
        await self.store.delete_v1_batch(found.pk)
        return found
