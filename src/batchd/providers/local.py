"""The local provider: a flush becomes an engine batch that batchd's own workers run.

Its records are ``{job_type, custom_id, payload}`` run by the ``aibatch`` dispatcher
task, which hands each payload to the task its job type names; the batch's priority
is its most urgent job's. Results are there as soon as each item ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchd.core.jobs import ResultKind
from batchd.core.manager import BatchManager
from batchd.domain.models import BatchSpec, Item, Principal, Role, Tier
from batchd.domain.states import ItemStatus
from batchd.providers import base
from batchd.providers.base import BatchProgress, Fetched, ProviderResult
from batchd.tasks.dispatch import AIBATCH

OWNER = "aibatch"  # the engine batches' owner: visible to the tenant's supervisor keys
PAGE = 1000
KINDS = {
    ItemStatus.SUCCEEDED: ResultKind.SUCCEEDED,
    ItemStatus.FAILED: ResultKind.ERRORED,
    ItemStatus.CANCELLED: ResultKind.CANCELED,
}


UNLIMITED: dict[str, float] = {"max_batch_size": -1, "api_calls": -1, "items": -1, "cost_usd": -1}


class LocalProvider(base.Provider):
    """Provider batches run by this batchd's engine.

    Args:
        manager: the engine's batch manager.
        model: the price-table row local jobs are priced as.
        parallelism: items of one batch running at once (None: no per-batch cap).
        max_attempts: attempts of a job before it fails.
    """

    name = "local"

    def __init__(
        self, *, manager: BatchManager, model: str | None = "local",
        parallelism: int | None = None, max_attempts: int = 3,
    ) -> None:
        self.manager = manager
        self.model = model
        self.parallelism = parallelism
        self.max_attempts = max_attempts

    @staticmethod
    def principal(tenant_id: str) -> Principal:
        return Principal(key_id="aibatch", tenant_id=tenant_id, tenant_name="",
                         role=Role.SUPERVISOR, tier=Tier.ENTERPRISE, owner=OWNER,
                         # The jobs were metered when enqueued: a flush is not held to a tier.
                         limits=UNLIMITED)

    async def submit(self, *, tenant_id: str, requests: list[base.JobRequest]) -> str:
        spec = BatchSpec(
            task=AIBATCH, version="", priority=max(r.priority for r in requests),
            parallelism=self.parallelism, max_attempts=self.max_attempts,
            metadata={"source": "aibatch"}, dialect="aibatch",
        )

        async def records() -> AsyncIterator[list[Any]]:
            yield [{"job_type": r.job_type, "custom_id": r.custom_id, "payload": r.payload}
                   for r in requests]

        created = await self.manager.create_batch(self.principal(tenant_id), spec, records())
        return created.batch.id

    async def fetch(self, batch_id: str, *, waiting: set[str]) -> Fetched:
        store = self.manager.store
        batch = await store.get_batch(batch_id, tenant_id=None)
        if batch is None:
            raise base.ProviderError(f"the engine has no batch {batch_id}")
        if batch.is_terminal:
            progress = BatchProgress.ENDED
        else:
            progress = BatchProgress.CANCELING if batch.stop_reason else BatchProgress.IN_PROGRESS
        results: list[ProviderResult] = []
        after = -1
        while waiting:
            items = await store.list_items(batch_id, status=None, after_seq=after, limit=PAGE)
            for item in items:
                result = _result(item, waiting)
                if result is not None:
                    results.append(result)
            if len(items) < PAGE:
                break
            after = items[-1].seq
        return Fetched(progress=progress, results=results)

    async def cancel(self, batch_id: str) -> None:
        batch = await self.manager.store.get_batch(batch_id, tenant_id=None)
        if batch is not None and not batch.is_terminal:
            await self.manager.cancel_batch(
                self.principal(batch.tenant_id), batch_id, "every job was cancelled"
            )


def _result(item: Item, waiting: set[str]) -> ProviderResult | None:
    kind = KINDS.get(ItemStatus(item.status))
    if kind is None:
        return None  # still queued or running
    custom_id = orjson.loads(item.input).get("custom_id")
    if custom_id not in waiting:
        return None
    usage = item.usage or {}
    ms = 0
    if item.started_at is not None and item.finished_at is not None:
        ms = round((item.finished_at - item.started_at) * 1000)
    error = None
    if kind != ResultKind.SUCCEEDED:
        error = str((item.error or {}).get("message") or kind.value)
    return ProviderResult(
        custom_id=custom_id, kind=kind,
        output=orjson.loads(item.output) if item.output is not None else None, error=error,
        tokens_in=int(usage.get("tokens_in", 0)), tokens_out=int(usage.get("tokens_out", 0)),
        reported_usd=float(usage.get("cost_usd", 0.0)), processing_ms=ms,
        finished_at=item.finished_at,
    )
