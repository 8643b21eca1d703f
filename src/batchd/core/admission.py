"""Commit admission: whether an upload may join its batch (pure; no I/O).

A commit reads the batch it commits to (row locked), the upload's totals and, when
asked, the tenant's buffers and an earlier batch under the same idempotency key;
:func:`admit` decides; the commit then writes what the verdict says.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchd.core.quotas import Limits, batch_too_large, input_buffer_full
from batchd.domain import errors
from batchd.domain.states import BatchStatus


@dataclass(frozen=True, slots=True)
class CommitTarget:
    """The batch an upload commits to, as the commit reads it."""

    pk: int
    tenant_id: str
    status: str
    staging: bool  # being created: invisible until this commit
    stop_reason: str | None
    in_buffer_bytes: int
    max_input_bytes: int | None
    n_total: int = 0  # items already committed to it


@dataclass(frozen=True, slots=True)
class Upload:
    """What the upload holds: its items, their records, estimated cost and input bytes."""

    items: int
    records: int
    est_usd: float
    size: int


@dataclass(frozen=True, slots=True)
class Admit:
    """The upload joins the batch."""


@dataclass(frozen=True, slots=True)
class Replay:
    """A retried create: ``batch_id`` already holds the request; this upload is dropped."""

    batch_id: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """The upload is discarded (with its batch when ``drop_batch``) and ``error`` raised."""

    error: errors.BatchdError
    drop_batch: bool


Verdict = Admit | Replay | Refuse


def admit(
    target: CommitTarget, upload: Upload, *, replay_of: str | None, tenant_used: int,
    tenant_limit: int | None, limits: Limits | None = None, tier: str = "",
) -> Verdict:
    """The verdict on committing ``upload`` to ``target``.

    Args:
        replay_of: the batch an earlier request with the same idempotency key created.
        tenant_used: input buffer bytes in use over the tenant's active batches.
        tenant_limit: the tenant's input buffer (None or 0: unlimited).
        limits, tier: the caller's tier limits (None: not held to any), for the batch size.
    """
    if replay_of is not None:
        return Replay(replay_of)
    if target.status != BatchStatus.OPEN or target.stop_reason:
        return Refuse(
            errors.Conflict(f"batch is {target.status} and accepts no more items"),
            drop_batch=False,
        )
    if limits is not None:
        # Here, in the commit's transaction (the batch row locked), two concurrent appends
        # cannot both pass the last of a batch's size.
        too_large = batch_too_large(target.n_total + upload.items, limits, tier=tier)
        if too_large is not None:
            return Refuse(too_large, drop_batch=target.staging)
    full = input_buffer_full(
        upload.size, batch_used=target.in_buffer_bytes, batch_limit=target.max_input_bytes,
        tenant_used=tenant_used, tenant_limit=tenant_limit,
    )
    if full is not None:
        # A batch being created goes with its only upload.
        return Refuse(full, drop_batch=target.staging)
    return Admit()
