"""Rows that cross the store boundary: items to stage, export rows and pages, batch queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
