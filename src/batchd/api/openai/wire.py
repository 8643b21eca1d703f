"""batchd's files and batches as the ``openai`` SDK's types, and the output files' lines."""

from __future__ import annotations

import functools
import typing
from types import SimpleNamespace
from typing import Any

import orjson

from batchd.core.txn.files import FileRow, V1BatchRow
from batchd.domain.models import item_public_id
from batchd.domain.records import ExportRow

ENDED = ("completed", "failed", "expired", "cancelled")


@functools.cache
def sdk() -> SimpleNamespace:
    """The SDK's types, imported on first use (the SDK takes a while to import, and a
    server that never serves /v1 need not pay for it)."""
    from openai.types import Batch, FileObject
    from openai.types.batch import Errors
    from openai.types.batch_error import BatchError
    from openai.types.batch_request_counts import BatchRequestCounts
    from openai.types.batch_usage import BatchUsage, InputTokensDetails, OutputTokensDetails

    return SimpleNamespace(Batch=Batch, FileObject=FileObject, Errors=Errors,
                           BatchError=BatchError, BatchRequestCounts=BatchRequestCounts,
                           BatchUsage=BatchUsage, InputTokensDetails=InputTokensDetails,
                           OutputTokensDetails=OutputTokensDetails)
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was cancelled before it ran."


def upload_purposes() -> tuple[str, ...]:
    """The purposes a file may be uploaded with: the SDK's own list for ``files.create``."""
    from openai.types import FilePurpose

    return typing.get_args(FilePurpose)


def file_object(row: FileRow) -> dict[str, Any]:
    fields = dict(
        id=row.id, object="file", bytes=row.bytes, created_at=int(row.created_at),
        filename=row.filename, purpose=row.purpose, status="processed",
        expires_at=int(row.expires_at) if row.expires_at else None,
    )
    model = sdk().FileObject
    if row.purpose not in typing.get_args(model.model_fields["purpose"].annotation):
        # The SDK uploads purposes (``evals``) its FileObject does not list yet: built
        # unchecked, as the SDK itself reads an answer.
        return model.model_construct(**fields).model_dump(mode="json")
    return model(**fields).model_dump(mode="json")


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def _counts(row: V1BatchRow) -> Any:
    failed = row.n_failed
    if row.status in ENDED:
        failed += row.n_cancelled  # expired and cancelled requests are in the error file
    return sdk().BatchRequestCounts(total=row.n_total, completed=row.n_succeeded, failed=failed)


def _errors(row: V1BatchRow) -> Any:
    if not row.errors:
        return None
    t = sdk()
    return t.Errors(object="list", data=[t.BatchError(**e) for e in orjson.loads(row.errors)])


def batch_object(row: V1BatchRow) -> dict[str, Any]:
    t = sdk()
    return t.Batch(
        id=row.id, object="batch", endpoint=row.endpoint, errors=_errors(row),
        input_file_id=row.input_file_id or "", completion_window=row.completion_window,
        status=row.status,  # type: ignore[arg-type]
        output_file_id=row.output_file_id, error_file_id=row.error_file_id,
        created_at=int(row.created_at), in_progress_at=_ts(row.in_progress_at),
        expires_at=_ts(row.expires_at), finalizing_at=_ts(row.finalizing_at),
        completed_at=_ts(row.completed_at), failed_at=_ts(row.failed_at),
        expired_at=_ts(row.expired_at), cancelling_at=_ts(row.cancelling_at),
        cancelled_at=_ts(row.cancelled_at), request_counts=_counts(row),
        metadata=orjson.loads(row.metadata) if row.metadata else None,
        usage=t.BatchUsage(
            input_tokens=row.tokens_in, output_tokens=row.tokens_out,
            total_tokens=row.tokens_in + row.tokens_out,
            input_tokens_details=t.InputTokensDetails(cached_tokens=0),
            output_tokens_details=t.OutputTokensDetails(reasoning_tokens=0)),
    ).model_dump(mode="json")


def page(objects: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": objects,
            "first_id": objects[0]["id"] if objects else None,
            "last_id": objects[-1]["id"] if objects else None, "has_more": has_more}


def result_line(row: ExportRow, ended: str) -> tuple[bool, bytes]:
    """A request's line in the output file (True) or the error file (False), in OpenAI's
    format: ``{"id", "custom_id", "response": {status_code, request_id, body}, "error"}``."""
    custom_id = orjson.loads(row.input).get("custom_id")
    line: dict[str, Any] = {"id": f"batch_req_{item_public_id(row.rowid)[4:]}",
                            "custom_id": custom_id, "response": None, "error": None}
    good = row.status == "succeeded"
    if good:
        line["response"] = orjson.loads(row.output) if row.output is not None else None
    elif row.status == "failed" and row.error and row.error.get("status_code"):
        e = row.error
        line["response"] = {"status_code": e["status_code"], "request_id": e.get("request_id"),
                            "body": e.get("body")}
    elif row.status == "cancelled":
        expired = ended == "expired"
        line["error"] = {"code": "batch_expired" if expired else "batch_cancelled",
                         "message": EXPIRED_MESSAGE if expired else CANCELLED_MESSAGE}
    else:
        e = row.error or {}
        line["error"] = {"code": e.get("code", "server_error"),
                         "message": e.get("message", "the request failed")}
    return good, orjson.dumps(line) + b"\n"
