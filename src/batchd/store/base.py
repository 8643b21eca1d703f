"""The storage interface every backend implements (see tests/integration/test_store_contract.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batchd.core.quotas import Metering
from batchd.domain.models import Batch, BatchSpec, ClaimedItem, Item, Outcome
from batchd.store.script import Script, T
from batchd.store.taskdefs import TaskDefStore
from batchd.store.webhooks import WebhookStore


@dataclass(slots=True)
class StagedItem:
    n_records: int
    input: bytes
    est_usd: float
    ext_id: str | None = None  # the client's own id for the item (a Spark chunk id)
    meta: bytes | None = None  # dialect data kept with the item, returned with its result
    runner: str | None = None  # the item's own runner, overriding its batch's
    # Notified (an event of type ``webhook_event``) once the item has ended.
    webhook_url: str | None = None
    webhook_event: str | None = None


@dataclass(slots=True)
class ExportRow:
    rowid: int
    seq: int
    rec0: int
    n_records: int
    status: str
    input: bytes
    output: bytes | None
    error: dict[str, Any] | None
    ext_id: str | None = None
    meta: bytes | None = None
    compute_ms: float | None = None


@dataclass(slots=True)
class ExportPage:
    """Items of a batch, column by column: ``inputs`` / ``outputs`` are JSON arrays of the
    items' JSON (``null`` for no output), ``*_lengths`` each one's length in bytes."""

    count: int
    last_seq: int
    ids: list[int]
    runners: list[str | None]
    inputs: bytes
    input_lengths: list[int]
    outputs: bytes
    output_lengths: list[int]


@dataclass(slots=True)
class BatchQuery:
    """Which of a tenant's batches a page or a summary covers."""

    tenant_id: str
    owner: str | None = None  # None: every owner's
    task: str | None = None
    statuses: tuple[str, ...] | None = None
    started: bool | None = None  # True: dispatch has begun (started_at set); False: not yet


@dataclass(slots=True)
class BatchTotals:
    """The batches of one status (started or not): how many, their items, cost, tokens."""

    status: str
    started: bool
    batches: int
    items: int
    cost_usd: float
    tokens: int


class Store(WebhookStore, TaskDefStore, ABC):
    """Durable state of tenants, keys, batches and items (and webhooks, task definitions).

    Every write is one transaction; every state change is guarded by the
    transition table in :mod:`batchd.domain.states`; item outcomes are written only
    while the lease's fencing token matches.
    """

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abstractmethod
    async def close(self) -> None: ...

    # batches: ingest
    async def create_batch(
        self, *, batch_id: str, tenant_id: str, owner: str, spec: BatchSpec, now: float
    ) -> None:
        """Insert a batch that stays invisible until its first upload commits."""

    async def stage_items(self, batch_id: str, stage: str, items: list[StagedItem]) -> None:
        """Write items that stay invisible until :meth:`commit_stage`."""

    async def commit_stage(
        self, batch_id: str, stage: str, *, close: bool, now: float,
        idempotency_key: str | None = None, request_hash: str | None = None,
        tenant_input_limit: int | None = None, metering: Metering | None = None,
    ) -> str:
        """Make staged items runnable and count them, in one transaction.

        ``metering`` is added to the usage in the same transaction, after the items,
        and its quotas checked; if one is passed, nothing is committed and
        :class:`batchd.domain.errors.QuotaExceeded` raised (the stage stays, to discard).

        The upload must fit the batch's input buffer (``max_input_bytes``) and the
        tenant's (``tenant_input_limit`` over its active batches); if it does not, it is
        discarded and :class:`batchd.core.quotas.InputBufferFull` raised.

        Returns the batch id that holds the request: ``batch_id``, or the batch an
        earlier request with the same idempotency key created (whose hash the
        caller must compare).

        Raises:
            errors.Conflict: the batch no longer accepts items.
        """

    async def discard_stage(self, batch_id: str, stage: str, *, drop_batch: bool) -> None: ...

    # batches: lifecycle and reads
    async def get_batch(self, batch_id: str, *, tenant_id: str | None) -> Batch | None: ...

    async def find_batch_by_idempotency(self, tenant_id: str, key: str) -> Batch | None: ...

    async def list_batches(
        self, *, tenant_id: str, owner: str | None, status: str | None,
        before_pk: int | None, limit: int,
    ) -> list[Batch]: ...

    async def recent_batches(
        self, *, tenant_id: str, owner: str | None, finished_since: float, limit: int
    ) -> list[Batch]:
        """Active batches, and those finished at or after ``finished_since``, newest first."""

    async def tenant_buffers(self, tenant_id: str) -> tuple[int, int]:
        """Input and output buffer bytes in use over the tenant's active batches."""

    async def query_batches(
        self, query: BatchQuery, *, offset: int, limit: int
    ) -> tuple[list[Batch], int]:
        """A page of the matching batches, newest first, and how many match in all."""

    async def batch_totals(self, query: BatchQuery) -> list[BatchTotals]:
        """The matching batches summed by status and by whether they started."""

    async def take_results(self, batch_id: str, *, limit: int, now: float) -> list[ExportRow]:
        """Hand out up to ``limit`` finished, undelivered items of a ``deliver`` batch.

        They are marked delivered in the same transaction and leave the output buffer,
        which lets a batch paused on a full buffer run again.
        """

    async def list_items(
        self, batch_id: str, *, status: str | None, after_seq: int, limit: int
    ) -> list[Item]: ...

    async def get_item(self, batch_id: str, rowid: int) -> Item | None: ...

    async def export_rows(self, batch_id: str, *, after_seq: int, limit: int) -> list[ExportRow]:
        """Finished items in seq order, for streaming export."""

    async def export_page(
        self, batch_id: str, *, status: str, after_seq: int, limit: int
    ) -> ExportPage | None:
        """Up to ``limit`` items in ``status`` after ``after_seq``, in seq order, as one
        :class:`ExportPage` (None when there are none): the bulk export's hot path, which
        the database assembles so that no Python object is made per row."""

    async def item_keys(
        self, batch_id: str, *, statuses: tuple[str, ...], after_seq: int, limit: int
    ) -> list[tuple[int, int]]:
        """``(seq, rowid)`` of the items in ``statuses``, in seq order (no payloads)."""

    async def item_batch(self, rowid: int, *, tenant_id: str) -> str | None:
        """The id of the batch holding item ``rowid``, if it is the tenant's and visible."""

    # execution
    async def claim_items(
        self, *, owner: str, limit: int, now: float, lease_s: float, tenant_cap: int
    ) -> list[ClaimedItem]: ...

    async def finish_items(self, outcomes: list[Outcome], *, now: float) -> int:
        """Group-commit outcomes; returns how many still held their lease."""

    async def heartbeat(
        self, *, owner: str, now: float, lease_until: float, info: dict[str, Any],
        item_ids: list[int] | None = None,
    ) -> None:
        """Record the worker as alive and renew its leases.

        Only ``item_ids`` are renewed when given (the items the worker still
        tracks), else every running item of ``owner``.
        """

    async def cancel_requests(self, *, owner: str) -> list[int]:
        """Running items of ``owner`` whose cancellation was requested."""

    async def reap(self, *, now: float, retry_backoff_max_s: float, staging_ttl_s: float) -> int:
        """Return expired leases to the queue, expire batches, drop abandoned uploads."""

    # usage and events
    async def ping(self) -> None: ...

    @abstractmethod
    async def run_read(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        """Run the transaction script ``script(*args, **kw)`` as a read (it writes nothing;
        it may run again on a fresh connection)."""

    @abstractmethod
    async def run_write(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        """Run ``script(*args, **kw)`` in one write transaction. After a deadlock, a
        serialization failure or a connection lost before COMMIT, a fresh script runs
        again from the start."""

    async def subscribe_work(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Call ``callback`` whenever another process commits new items.

        Backends without notifications leave this a no-op; workers then poll.
        """
