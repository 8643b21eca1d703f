"""Plain domain records passed between the manager, the store and the executor."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """From least to most: a role may do everything the ones before it may (see
    ``batchd.core.roles``)."""

    USER = "user"  # its own batches
    SUPERVISOR = "supervisor"  # every batch of its tenant
    ADMIN = "admin"  # and its own tenant's keys and settings
    OPERATOR = "operator"  # and tenants, every tenant's keys, task definitions


class Tier(StrEnum):
    FREE = "free"
    BASIC = "basic"
    PRO = "pro"
    ENTERPRISE = "enterprise"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def item_public_id(rowid: int) -> str:
    return f"itm_{rowid}"


MAX_ROWID = 2**63 - 1
# The stored parallelism of a batch with no per-batch cap: the column stays an integer
# and every claim's room stays one subtraction (a 32-bit integer, for PostgreSQL).
UNCAPPED = 2**31 - 1


def item_rowid(public_id: str) -> int | None:
    """The row id in ``itm_<n>``, or None when it cannot name a stored item."""
    digits = public_id[4:]
    if not public_id.startswith("itm_") or not (digits.isascii() and digits.isdigit()):
        return None
    rowid = int(digits)
    return rowid if rowid <= MAX_ROWID else None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Tenant:
    id: str
    name: str
    tier: str
    created_at: float


@dataclass(slots=True)
class ApiKey:
    id: str
    tenant_id: str
    tenant_name: str
    role: str
    tier: str
    owner: str
    prefix: str
    created_at: float
    revoked_at: float | None = None
    # Per-key overrides of the tier's limits ({"api_calls": 50, …}); None = the tier's.
    limits: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: every query is scoped by ``tenant_id``."""

    key_id: str
    tenant_id: str
    tenant_name: str
    role: str
    tier: str
    owner: str
    limits: dict[str, float] | None = field(default=None, compare=False)

    @property
    def sees_all_of_tenant(self) -> bool:
        return self.role in (Role.SUPERVISOR, Role.ADMIN, Role.OPERATOR)


# The dialects a batch can be made through (Batch.dialect, BatchSpec.dialect): the API
# each one's creator spoke, as the dashboard and the native list filter by it.
DIALECTS = ("native", "spark", "simulations", "taskruns", "aibatch", "openai", "anthropic",
            "parallel")


@dataclass(slots=True)
class BatchSpec:
    """Settings a batch is created with (dialect-neutral but for ``dialect``, one of
    :data:`DIALECTS`: which API made it, recorded and shown, never acted on)."""

    task: str
    version: str
    runner: str | None = None
    records_per_item: int = 1
    priority: int = 50
    parallelism: int | None = None  # items running at once; None: no per-batch cap
    fail_fast: bool = False
    max_error_pct: float = 100.0
    budget_usd: float | None = None
    run_after: float = 0.0
    item_timeout_s: float | None = None
    max_attempts: int = 3
    retry_backoff_s: float = 1.0
    expires_at: float | None = None
    max_input_bytes: int | None = None
    max_output_bytes: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    close: bool = True
    est_usd_per_record: float = 0.0
    # Pull-style dialects: finished results wait in an output buffer until taken.
    deliver: bool = False
    # Close the batch after this long without uploads or pulls.
    idle_timeout_s: float | None = None
    # Notify this URL (an event of type ``webhook_event``) once the batch has finished.
    webhook_url: str | None = None
    webhook_event: str | None = None
    dialect: str = "native"

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}; known: {', '.join(DIALECTS)}")


@dataclass(slots=True)
class Batch:
    pk: int
    id: str
    tenant_id: str
    owner: str
    task: str
    version: str
    runner: str | None
    status: str
    stop_reason: str | None
    records_per_item: int
    priority: int
    parallelism: int | None  # None: no per-batch cap (stored as UNCAPPED)
    fail_fast: bool
    max_error_pct: float
    budget_usd: float | None
    run_after: float
    item_timeout_s: float | None
    max_attempts: int
    expires_at: float | None
    metadata: dict[str, Any]
    error: dict[str, Any] | None
    n_total: int
    n_queued: int
    n_running: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int
    r_total: int
    r_succeeded: int
    r_failed: int
    est_usd: float
    reserved_usd: float
    actual_usd: float
    tokens_in: int
    tokens_out: int
    in_bytes: int
    out_bytes: int
    created_at: float
    started_at: float | None
    closed_at: float | None
    finished_at: float | None
    idempotency_key: str | None = None
    request_hash: str | None = None
    max_input_bytes: int | None = None
    max_output_bytes: int | None = None
    in_buffer_bytes: int = 0
    out_buffer_bytes: int = 0
    n_undelivered: int = 0
    r_undelivered: int = 0
    compute_ms: float = 0.0
    deliver: bool = False
    idle_timeout_s: float | None = None
    last_activity_at: float | None = None
    close_reason: str | None = None
    webhook_url: str | None = None
    webhook_event: str | None = None
    paused_at: float | None = None  # set: dispatch is paused
    dialect: str = "native"  # of DIALECTS: the API that made it

    @property
    def is_terminal(self) -> bool:
        return self.status not in ("open", "closed")

    def __post_init__(self) -> None:
        if self.parallelism is not None and self.parallelism >= UNCAPPED:
            self.parallelism = None


@dataclass(slots=True)
class Item:
    rowid: int
    batch_id: str
    seq: int
    rec0: int
    n_records: int
    status: str
    attempts: int
    input: bytes
    output: bytes | None
    error: dict[str, Any] | None
    usage: dict[str, Any] | None
    started_at: float | None
    finished_at: float | None
    runner: str | None = None  # the item's own runner, overriding its batch's

    @property
    def id(self) -> str:
        return item_public_id(self.rowid)


@dataclass(slots=True)
class ClaimedItem:
    """An item leased to a worker, with what it needs to run it."""

    rowid: int
    batch_id: str
    tenant_id: str
    seq: int
    n_records: int
    records_per_item: int
    attempts: int
    fence: int
    input: bytes
    task: str
    version: str
    runner: str | None
    item_timeout_s: float | None
    max_attempts: int
    retry_backoff_s: float
    est_usd: float
    # Held in reserve, not started: still queued, its lease keeping other claimers off,
    # it starts in the slot of one of its claimer's items of its batch when that one's
    # handler returns (a :class:`Promotion`), with no claim in between.
    reserved: bool = False


@dataclass(slots=True)
class Promotion:
    """A reserved item its claimer started in the slot of an item of the same batch whose
    handler returned: recorded as claimed (running, counted, ``started_at``) with that
    item's outcome or before it, so the batch never counts the slot free while it is not.

    ``refused`` is set by the transaction that records it when the reservation no longer
    held (the batch paused, stopped or cancelled; the lease lost): that run is void and
    its outcome will not be recorded."""

    rowid: int
    fence: int
    batch_id: str
    tenant_id: str
    est_usd: float
    started_at: float
    refused: bool = False


@dataclass(frozen=True, slots=True)
class FreedSlots:
    """A worker's finished items whose outcomes wait for its group commit.

    Their handlers have returned, so their slots are free, but their batches still count
    them as running until the commit: a claim may take those slots again. ``items`` is
    by batch id; ``tenants`` counts them by tenant (for the per-tenant cap).
    """

    items: dict[str, list[int]]
    tenants: dict[str, int]

    def of(self, batch_id: str) -> list[int]:
        return self.items.get(batch_id, [])


NO_FREED_SLOTS = FreedSlots({}, {})


@dataclass(slots=True)
class Outcome:
    """The result of one attempt, written only if ``fence`` still matches."""

    rowid: int
    fence: int
    status: str  # succeeded | failed | cancelled | queued (retry)
    output: bytes | None = None
    error: dict[str, Any] | None = None
    records_succeeded: int = 0
    records_failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    retry_at: float = 0.0
    finished_at: float = 0.0
    compute_ms: float = 0.0
    # Whose slot the outcome frees (set by the worker; not stored).
    batch_id: str = ""
    tenant_id: str = ""
    # The slot went straight to a reserved item of the batch (a Promotion): not free.
    passed_on: bool = False
