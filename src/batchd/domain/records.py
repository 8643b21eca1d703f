"""Rows that cross the store boundary: items to stage, export rows and pages, batch queries."""

from __future__ import annotations

import itertools
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
    usage: dict[str, Any] | None = None  # {tokens_in, tokens_out, cost_usd}; None: none used


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


# The native results row, ``{item_id, seq, status, input, output, usage, error}``: plain
# columns, then JSON documents (flattened into dotted columns in CSV and Parquet), then
# JSON columns kept whole.
RESULT_COLUMNS = ("item_id", "seq", "status")
RESULT_DOCUMENTS = ("input", "output", "usage")
RESULT_TRAILING = ("error",)

NO_USAGE: dict[str, Any] = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
"""The usage of an item that reported none (and was charged nothing)."""


def record_usage_runs(usage: dict[str, Any] | None, n: int) -> list[tuple[dict[str, Any], int]]:
    """The shares of an item's ``usage`` among its ``n`` records (see :func:`record_usages`)
    as runs: each share and how many records in a row take it (at most three runs)."""
    if n == 1:
        return [(usage or NO_USAGE, 1)]
    if not usage:
        return [(NO_USAGE, n)]
    tin, tout = int(usage.get("tokens_in", 0)), int(usage.get("tokens_out", 0))
    cost = float(usage.get("cost_usd", 0.0)) / n
    # Records before tin % n take one more token in, those before tout % n one more out.
    cuts = sorted({0, tin % n, tout % n, n})
    return [({"tokens_in": tin // n + (a < tin % n), "tokens_out": tout // n + (a < tout % n),
              "cost_usd": cost}, b - a)
            for a, b in itertools.pairwise(cuts)]


def record_usages(usage: dict[str, Any] | None, n: int) -> list[dict[str, Any]]:
    """Each of an item's ``n`` records' share of the item's ``usage``: even, whole tokens
    (the first records take the remainder), so that the records' sums are the item's."""
    return [share for share, count in record_usage_runs(usage, n) for _ in range(count)]
