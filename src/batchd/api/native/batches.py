"""``/api/batches``: create, feed, watch, cancel and export batches."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from batchd import netguard
from batchd.api import ingress, jsonbody, openapi, times
from batchd.api.deps import Caller, Config, Manager, body_stream, read_body
from batchd.api.native import actions as batch_actions
from batchd.api.native.schemas import (
    BatchCreate,
    BatchSettings,
    CancelBody,
    batch_json,
    item_json,
)
from batchd.api.responses import JsonResponse
from batchd.core.ingest import csv_records, json_array_records, ndjson_records
from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.domain.models import DIALECTS, Principal
from batchd.events.sse import sse_stream
from batchd.export import FORMATS, exporter_for
from batchd.settings import Settings

router = APIRouter(tags=["batches"], route_class=jsonbody.PolicyRoute)

NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/json-lines",
                "application/ndjson"}
CSV_TYPES = {"text/csv", "application/csv"}
# A JSON body is held whole while it is parsed: above BATCHD_MAX_JSON_BODY_BYTES, stream.
SEND_NDJSON = "; send the items as NDJSON (application/x-ndjson), parsed as it arrives"
NDJSON_DOC = {"type": "string", "description": "one input (a JSON value) per line"}
CSV_DOC = {"type": "string", "description": "a header row, then one input per row"}
CREATE_DOC = {
    **openapi.body_doc({"application/json": BatchCreate, "application/x-ndjson": NDJSON_DOC,
                        "text/csv": CSV_DOC}),
    # An NDJSON or CSV body carries only inputs: the batch's settings come in the query.
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": schema,
         "description": "With an NDJSON or CSV body (a JSON body carries it as a field)."}
        for name, schema in BatchSettings.model_json_schema()["properties"].items()
        if name != "metadata"
    ],
}
ITEMS_DOC = openapi.body_doc({
    "application/json": {"anyOf": [
        {"type": "array", "description": "one input per record"},
        {"type": "object", "properties": {"items": {"type": "array"}}, "required": ["items"]},
    ]},
    "application/x-ndjson": NDJSON_DOC, "text/csv": CSV_DOC,
})


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


def _invalid(exc: ValidationError, where: str) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": (where, *e["loc"])} for e in exc.errors(include_url=False)]
    )


async def _whole_body(request: Request, cfg: Settings) -> bytes:
    """A JSON body, held whole under the smaller JSON limit (NDJSON streams instead)."""
    return await read_body(request, ingress.limit_of(ingress.BodyKind.JSON, cfg),
                           instead=SEND_NDJSON)


def _json_object(body: bytes) -> dict[str, Any]:
    data = jsonbody.parse(body) if body.strip() else {}
    if not isinstance(data, dict):
        raise errors.InvalidInput(
            "body must be a JSON object",
            details=[{"loc": ["body"], "msg": "expected an object", "type": "dict_type"}],
        )
    return data


async def _spec(mgr: BatchManager, cfg: Settings, s: BatchSettings, where: str) -> Any:
    if s.webhook_url is not None:
        refused = await netguard.refusals([s.webhook_url], cfg.outbound_policy())
        if refused:
            message = refused[s.webhook_url]
            raise errors.InvalidInput(message, details=[
                {"loc": [where, "webhook_url"], "msg": message, "type": "unsafe_url"}
            ])
    try:
        task = await mgr.find_task(s.task, s.version)
    except errors.NotFound as exc:
        raise errors.InvalidInput(
            exc.message,
            details=[{"loc": [where, "task"], "msg": exc.message, "type": "unknown_task"}],
        ) from None
    return s.to_spec(
        now=mgr.clock(), default_parallelism=cfg.default_parallelism,
        default_attempts=cfg.default_max_attempts, default_backoff_s=cfg.retry_backoff_s,
        task_attempts=task.max_attempts,
    )


def _stream_records(request: Request, cfg: Settings, hasher: Any) -> AsyncIterator[list[Any]]:
    body = body_stream(request, hasher)
    if _content_type(request) in CSV_TYPES:
        return csv_records(body, max_record_bytes=cfg.max_record_bytes)
    return ndjson_records(body, max_record_bytes=cfg.max_record_bytes)


async def _created(mgr: BatchManager, created: Any) -> Response:
    headers = {"Idempotent-Replayed": "true"} if created.replayed else None
    return JsonResponse(batch_json(created.batch, now=mgr.clock(),
                                   warnings=await mgr.batch_warnings(created.batch)),
                        status_code=201, headers=headers)


@router.post("/batches", status_code=201, openapi_extra=CREATE_DOC)
@ingress.accepts(ingress.BodyKind.STREAM)
async def create_batch(
    request: Request, caller: Caller, mgr: Manager, cfg: Config,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Create a batch from a JSON body, or from NDJSON / CSV with settings in the query."""
    ctype = _content_type(request)
    if ctype in NDJSON_TYPES or ctype in CSV_TYPES:
        return await _create_streamed(request, caller, mgr, cfg, ctype, idempotency_key)
    if ctype != "application/json":
        raise errors.InvalidInput(
            f"unsupported content type {ctype!r}",
            details=[{"loc": ["header", "content-type"], "msg": "use application/json, "
                      "application/x-ndjson or text/csv", "type": "content_type"}],
        )
    body = await _whole_body(request, cfg)
    request_hash = hashlib.sha256(body).hexdigest()
    if idempotency_key:
        replay = await mgr.replay_if_known(caller, idempotency_key, request_hash)
        if replay is not None:
            return await _created(mgr, replay)
    data = _json_object(body)
    items = data.pop("items", None)
    try:
        settings_ = BatchSettings.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, "body") from None
    if items is not None and not isinstance(items, list):
        raise errors.InvalidInput(
            "items must be a list",
            details=[{"loc": ["body", "items"], "msg": "expected a list", "type": "list_type"}],
        )
    spec = await _spec(mgr, cfg, settings_, "body")
    created = await mgr.create_batch(
        caller, spec, json_array_records(items or []), idempotency_key=idempotency_key,
        request_hash=request_hash, auto_records_per_item=settings_.records_per_item is None,
    )
    return await _created(mgr, created)


async def _create_streamed(
    request: Request, caller: Principal, mgr: BatchManager, cfg: Settings, ctype: str,
    idempotency_key: str | None,
) -> Response:
    params = dict(request.query_params)
    try:
        settings_ = BatchSettings.model_validate(params)
    except ValidationError as exc:
        raise _invalid(exc, "query") from None
    hasher = hashlib.sha256(orjson.dumps(sorted(params.items())) + ctype.encode())
    if idempotency_key and await mgr.idempotency_key_used(caller, idempotency_key):
        async for _ in body_stream(request, hasher):
            pass
        replay = await mgr.replay_if_known(caller, idempotency_key, hasher.hexdigest())
        return await _created(mgr, replay)
    records = _stream_records(request, cfg, hasher)
    spec = await _spec(mgr, cfg, settings_, "query")
    created = await mgr.create_batch(
        caller, spec, records, idempotency_key=idempotency_key,
        request_hash=hasher.hexdigest,  # complete once the body is consumed
        auto_records_per_item=settings_.records_per_item is None,
    )
    return await _created(mgr, created)


@router.post("/batches/{batch_id}/items", openapi_extra=ITEMS_DOC)
@ingress.accepts(ingress.BodyKind.STREAM)
async def add_items(batch_id: str, request: Request, caller: Caller, mgr: Manager,
                    cfg: Config) -> Response:
    """Append items (JSON array, NDJSON or CSV) to an open batch."""
    ctype = _content_type(request)
    if ctype in NDJSON_TYPES or ctype in CSV_TYPES:
        records = _stream_records(request, cfg, None)
    else:
        body = await _whole_body(request, cfg)
        data = jsonbody.parse(body)
        if isinstance(data, dict) and isinstance(data.get("items"), list):
            data = data["items"]
        if not isinstance(data, list):
            raise errors.InvalidInput(
                "body must be a JSON array of inputs",
                details=[{"loc": ["body"], "msg": "expected a list", "type": "list_type"}],
            )
        records = json_array_records(data)
    batch = await mgr.append_items(caller, batch_id, records)
    return JsonResponse(batch_json(batch, now=mgr.clock()))


@router.post("/batches/{batch_id}/close")
async def close_batch(batch_id: str, caller: Caller, mgr: Manager) -> Response:
    return JsonResponse(batch_json(await mgr.close_batch(caller, batch_id), now=mgr.clock()))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, caller: Caller, mgr: Manager,
                       body: CancelBody | None = None) -> Response:
    batch = await mgr.cancel_batch(caller, batch_id, body.reason if body else None)
    return JsonResponse(batch_json(batch, now=mgr.clock()))


@router.get("/batches")
async def list_batches(
    caller: Caller, mgr: Manager,
    status: Literal["open", "closed", "completed", "partial", "failed", "cancelled",
                    "expired"] | None = None,
    task: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    dialect: Annotated[Literal[DIALECTS] | None, Query(  # type: ignore[valid-type]
        description="the API the batch was made through")] = None,
    since: Annotated[str | None, Query(max_length=40, description=(
        "created at or after this ISO 8601 date or date and time (UTC without an offset)"
    ))] = None,
    until: Annotated[str | None, Query(max_length=40, description=(
        "created before this ISO 8601 date or date and time"))] = None,
    q: Annotated[str | None, Query(max_length=500, description=(
        "a batch id (that batch alone), or a text found in the batch's metadata"))] = None,
) -> Response:
    """The batches the caller may see, newest first: ``{data: [Batch], next_cursor}``."""
    rows, nxt = await mgr.list_batches(caller, status=status, task=task, cursor=cursor,
                                       limit=limit, dialect=dialect,
                                       since=times.epoch(since, "since"),
                                       until=times.epoch(until, "until"), search=q)
    now = mgr.clock()
    return JsonResponse({"data": [batch_json(b, now=now, warnings=await mgr.batch_warnings(b))
                                  for b in rows], "next_cursor": nxt})


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: str, caller: Caller, mgr: Manager) -> Response:
    batch = await mgr.get_batch(caller, batch_id)
    return JsonResponse(batch_json(batch, now=mgr.clock(),
                                   warnings=await mgr.batch_warnings(batch)))


@router.get("/batches/{batch_id}/items")
async def list_items(
    batch_id: str, caller: Caller, mgr: Manager,
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
    cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    rows, nxt = await mgr.list_items(caller, batch_id, status=status, cursor=cursor, limit=limit)
    return JsonResponse({"data": [item_json(i) for i in rows], "next_cursor": nxt})


@router.get("/batches/{batch_id}/items/{item_id}")
async def get_item(batch_id: str, item_id: str, caller: Caller, mgr: Manager) -> Response:
    return JsonResponse(item_json(await mgr.get_item(caller, batch_id, item_id)))


@router.get("/batches/{batch_id}/results")
@openapi.params(format={"type": "string", "enum": list(FORMATS), "default": "jsonl"})
async def results(
    batch_id: str, caller: Caller, mgr: Manager,
    format: Annotated[str, Query(description="jsonl, json, csv or parquet (with the "
                                             "parquet extra)")] = "jsonl",
) -> Response:
    """Every finished record, streamed: ``{item_id, seq, status, input, output, usage,
    error}``."""
    exporter = exporter_for(format)  # an unknown or unavailable format: 422 before any work
    await mgr.get_batch(caller, batch_id)

    return StreamingResponse(
        exporter.stream(lambda: mgr.iter_results(caller, batch_id)), media_type=exporter.media_type,
        headers={"Content-Disposition": f'attachment; filename="{batch_id}.{exporter.extension}"'},
    )


@router.get("/batches/{batch_id}/events")
async def events(batch_id: str, caller: Caller, mgr: Manager) -> Response:
    """Server-sent events: ``progress`` on every change, then ``done`` with the final state."""
    await mgr.get_batch(caller, batch_id)
    return StreamingResponse(
        sse_stream(_snapshots(mgr, caller, batch_id)), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _snapshots(
    mgr: BatchManager, caller: Principal, batch_id: str
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    last = None
    async for batch in mgr.watch(caller, batch_id):
        last = batch
        yield "progress", batch_json(batch, now=mgr.clock())
    if last is not None:
        yield "done", batch_json(last, now=mgr.clock())


# Retry, pause and resume (their own module), under the same prefix and checks.
router.include_router(batch_actions.router)
