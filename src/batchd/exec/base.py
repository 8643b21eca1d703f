"""The worker's two interfaces: where its work comes from, and how handlers run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from batchd.domain.models import ClaimedItem, FreedSlots, Outcome, Promotion
from batchd.tasks.context import TaskContext
from batchd.tasks.registry import TaskDef, TaskRegistry


class Executor(ABC):
    """Runs handlers; the worker decides what an outcome means."""

    @abstractmethod
    async def run(self, task: TaskDef, records: list[Any], ctx: TaskContext) -> list[Any]:
        """One output per record; a :class:`RecordError` in place of a failed record.

        An exception means the whole item failed (it may be retried).
        """

    @abstractmethod
    def close(self) -> None: ...


class WorkSource(Protocol):
    """Where a worker claims items and records their outcomes (the engine's database,
    :class:`batchd.core.db.Database`)."""

    async def subscribe_work(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever another process commits new items."""
        ...

    async def claim_items(
        self, *, owner: str, limit: int, now: float, lease_s: float, tenant_cap: int,
        freed: FreedSlots = ..., finished: Sequence[Outcome] = ...,
        tasks: TaskRegistry | None = ..., promotions: Sequence[Promotion] = ...,
        reserve: Mapping[str, int] | None = ..., adopt: Sequence[int] = ...,
    ) -> list[ClaimedItem]:
        """Lease up to ``limit`` ready items to ``owner`` for ``lease_s``; the slots of
        ``freed`` (``owner``'s finished, uncommitted items) may be taken again. The
        ``promotions`` and ``finished`` outcomes are recorded first (as by
        :meth:`finish_items`). With ``tasks``, only items of batches whose task it has
        are claimed. ``reserve``: how many more items of each batch to hold in reserve
        (those of a full batch come back ``reserved``, not started); ``adopt``: items it
        holds in reserve that it may lease like any ready one."""
        ...

    async def finish_items(
        self, outcomes: list[Outcome], *, now: float, promotions: Sequence[Promotion] = ...,
        owner: str = ..., lease_s: float = ...,
    ) -> int:
        """Group-commit outcomes, after ``owner``'s ``promotions`` (reserved items started
        in freed slots; those refused are marked so); returns how many outcomes still
        held their lease."""
        ...

    async def release_items(self, *, owner: str, rowids: list[int]) -> None:
        """Give items ``owner`` held in reserve back to every claimer."""
        ...

    async def heartbeat(
        self, *, owner: str, now: float, lease_until: float, info: dict[str, Any],
        item_ids: list[int] | None = None, claimed: int = 0,
    ) -> None:
        """Record the worker as alive and renew its leases (only ``item_ids``' when given);
        ``claimed``: the items it claimed since it started."""
        ...

    async def cancel_requests(self, *, owner: str) -> list[int]:
        """Running items of ``owner`` whose cancellation was requested."""
        ...

    async def reap(self, *, now: float, retry_backoff_max_s: float, staging_ttl_s: float) -> int:
        """Return expired leases to the queue, expire batches, drop abandoned uploads."""
        ...


class RetryDelay(Protocol):
    """Seconds before the next attempt of an item that failed ``attempts`` times
    (the engine's policy: :func:`batchd.core.scheduling.retry_delay_s`)."""

    def __call__(self, attempts: int, *, base_s: float, max_s: float) -> float: ...
