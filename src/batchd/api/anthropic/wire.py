"""Message batches and their results as the ``anthropic`` SDK's types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from batchd.core.txn.files import V1BatchRow
from batchd.domain.records import ExportRow


def _dt(value: float | None) -> Any:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def batch_object(row: V1BatchRow, *, base_url: str) -> dict[str, Any]:
    # Imported on first use: the SDK takes a while to import.
    from anthropic.types.messages import MessageBatch, MessageBatchRequestCounts

    done = row.engine_ended
    expired = row.engine_status == "expired"
    status: Any = "ended" if done else "canceling" if row.cancelling_at else "in_progress"
    return MessageBatch(
        id=row.id, type="message_batch", processing_status=status,
        request_counts=MessageBatchRequestCounts(
            processing=row.n_queued + row.n_running, succeeded=row.n_succeeded,
            errored=row.n_failed, canceled=0 if expired else row.n_cancelled,
            expired=row.n_cancelled if expired else 0),
        created_at=_dt(row.created_at), expires_at=_dt(row.expires_at),
        ended_at=_dt(row.finished_at) if done else None, archived_at=None,
        cancel_initiated_at=_dt(row.cancelling_at),
        results_url=f"{base_url}/v1/messages/batches/{row.id}/results" if done else None,
    ).model_dump(mode="json")


def _error(row: ExportRow) -> dict[str, Any]:
    e = row.error or {}
    body = e.get("body") if isinstance(e.get("body"), dict) else None
    if body and body.get("type") == "error":  # an Anthropic upstream's own error
        return body
    status = e.get("status_code") or 500
    kind = {400: "invalid_request_error", 404: "not_found_error", 401: "authentication_error",
            403: "permission_error", 413: "request_too_large", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "api_error")
    inner = (body or {}).get("error") if isinstance((body or {}).get("error"), dict) else None
    message = (inner or {}).get("message") or e.get("message") or "the request failed"
    return {"type": "error", "error": {"type": kind, "message": message}}


def result_line(row: ExportRow, ended_as: str) -> bytes:
    """``{"custom_id", "result": {"type": succeeded | errored | canceled | expired, …}}``."""
    custom_id = orjson.loads(row.input).get("custom_id")
    result: dict[str, Any]
    if row.status == "succeeded":
        out = orjson.loads(row.output) if row.output is not None else {}
        result = {"type": "succeeded", "message": out.get("body")}
    elif row.status == "cancelled":
        result = {"type": "expired" if ended_as == "expired" else "canceled"}
    else:
        result = {"type": "errored", "error": _error(row)}
    return orjson.dumps({"custom_id": custom_id, "result": result}) + b"\n"
