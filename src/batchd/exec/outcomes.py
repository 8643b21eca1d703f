"""A run's outcome, as the worker reports it: success (with per-record errors), failure,
retry, cancellation."""

from __future__ import annotations

from typing import Any

import orjson

from batchd.domain import codec
from batchd.domain.models import ClaimedItem, Outcome
from batchd.domain.states import ItemStatus
from batchd.tasks.context import RecordError, TaskContext


def records(item: ClaimedItem) -> list[Any]:
    records = orjson.loads(item.input)
    return [records] if item.records_per_item == 1 else records  # type: ignore[no-any-return]


def success(item: ClaimedItem, outputs: list[Any], ctx: TaskContext) -> Outcome:
    if not any(issubclass(t, RecordError) for t in set(map(type, outputs))):
        # Every record succeeded (the types are looked at in C, not record by record).
        return _stored(item, outputs[0] if item.records_per_item == 1 else outputs, ctx,
                       len(outputs), 0, None)
    errors_: list[dict[str, str] | None] = []
    failed = 0
    values: list[Any] = []
    for out in outputs:
        if isinstance(out, RecordError):
            failed += 1
            errors_.append(out.as_dict())
            values.append(None)
        else:
            errors_.append(None)
            values.append(out)
    if item.records_per_item == 1 and failed:
        return failure(item, errors_[0] or {}, final=True, ctx=ctx)
    error = {"code": "record_errors", "records": errors_} if failed else None
    return _stored(item, values[0] if item.records_per_item == 1 else values, ctx,
                   len(outputs) - failed, failed, error)


def _stored(item: ClaimedItem, value: Any, ctx: TaskContext, succeeded: int, failed: int,
            error: dict[str, Any] | None) -> Outcome:
    try:
        output = codec.dumps(value)
    except orjson.JSONEncodeError as exc:
        # Raised here it would escape the claim loop, and the lease loop would keep
        # this worker's items leased forever: fail the item instead, for good.
        error = {"code": "invalid_output", "message": f"the output is not storable JSON: {exc}"}
        return failure(item, error, final=True, ctx=ctx)
    usage = ctx.usage
    return Outcome(
        rowid=item.rowid, fence=item.fence, status=ItemStatus.SUCCEEDED, output=output,
        error=error, records_succeeded=succeeded, records_failed=failed,
        tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
        cost_usd=usage.cost_usd if usage.reported else item.est_usd,
    )


def failure(
    item: ClaimedItem, error: dict[str, Any], *, final: bool, ctx: TaskContext | None = None
) -> Outcome:
    usage = ctx.usage if ctx is not None else None
    return Outcome(
        rowid=item.rowid, fence=item.fence,
        status=ItemStatus.FAILED if final else ItemStatus.QUEUED, error=error,
        tokens_in=usage.tokens_in if usage else 0, tokens_out=usage.tokens_out if usage else 0,
        cost_usd=usage.cost_usd if usage else 0.0,
    )


def cancelled(item: ClaimedItem) -> Outcome:
    return Outcome(
        rowid=item.rowid, fence=item.fence, status=ItemStatus.CANCELLED,
        error={"code": "cancelled", "message": "cancelled while running"},
    )
