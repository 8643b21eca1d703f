"""``/{tenant}/api/v4/batch…``: the Spark batch pipeline over the engine's chunked batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from batchd.api import ingress, jsonbody, openapi
from batchd.api.deps import Config, Manager
from batchd.api.spark import records, results, schemas, services, views, wire
from batchd.api.spark.auth import SparkCaller
from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.domain.models import Batch, BatchSpec, Principal
from batchd.settings import Settings

router = APIRouter(route_class=jsonbody.PolicyRoute)

M = TypeVar("M", bound=BaseModel)
MAX_PARALLELISM = 100_000
RECENT_S = 3600.0  # the tenant status lists batches finished within the last hour
DEFAULT_MAX_CHUNKS = 50
MOST_CHUNKS = 100


def _doc(model: type[BaseModel]) -> dict[str, object]:
    return openapi.body_doc({wire.JSON: model, wire.BSON: model})


@router.post("/batch", openapi_extra=_doc(schemas.BatchCreate))
async def create_batch(
    request: Request, caller: SparkCaller, mgr: Manager, cfg: Config
) -> Response:
    """Create a batch against a service version; chunks follow with ``…/chunks``."""
    doc, as_bson = await wire.read_document(request)
    body = _parse(schemas.BatchCreate, doc)
    service = services.resolve(mgr.registry, body.service)
    created = await mgr.create_batch(caller, _spec(body, service, mgr, cfg), _no_records())
    return _answer(request, views.batch_json(created.batch, now=mgr.clock()), as_bson)


@router.post("/batch/{batch_id}/chunks", openapi_extra=_doc(schemas.ChunksBody))
@ingress.accepts(ingress.BodyKind.JSON)
async def add_chunks(
    request: Request, batch_id: str, caller: SparkCaller, mgr: Manager, cfg: Config
) -> Response:
    """Add chunks to the input buffer, all or none; a full buffer is a 429."""
    received = mgr.clock()
    await _spark_batch(mgr, caller, batch_id)
    doc, as_bson = await wire.read_document(request)
    chunks = records.to_chunks(_parse(schemas.ChunksBody, doc), as_bson=as_bson)
    try:
        batch = await mgr.add_chunks(
            caller, batch_id, chunks,
            tenant_input_limit=int(cfg.spark_tenant_max_input_mb * schemas.MB) or None,
            tenant_output_limit=int(cfg.spark_tenant_max_output_mb * schemas.MB) or None,
        )
    except orjson.JSONEncodeError as exc:  # a BSON value JSON cannot hold (ObjectId, …)
        raise errors.InvalidInput(f"a chunk holds a value that cannot be stored: {exc}") from None
    return _answer(request, views.status_json(batch, request_ts=received, now=mgr.clock()),
                   as_bson)


@router.get("/batch/status")
async def tenant_status(
    request: Request, caller: SparkCaller, mgr: Manager, cfg: Config
) -> Response:
    """In-progress batches and those finished in the last hour, and the tenant's buffers."""
    now = mgr.clock()
    seen = await mgr.tenant_activity(caller, finished_since=now - RECENT_S, now=now, limit=1000)
    in_progress: list[dict[str, Any]] = []
    recent: list[dict[str, Any]] = []
    for b in seen.batches:
        if views.is_spark(b):
            entry = views.tenant_entry(b, now=now)
            finished = entry["data"]["batch_status"] in views.FINISHED
            (recent if finished else in_progress).append(entry)
    in_used, out_used = seen.input_bytes, seen.output_bytes
    in_limit = int(cfg.spark_tenant_max_input_mb * schemas.MB)
    out_limit = int(cfg.spark_tenant_max_output_mb * schemas.MB)
    body = {
        "in_progress_batches": in_progress,
        "recent_batches": recent,
        "tenant": {
            "configuration": {
                "input_buffer_allocated_bytes": in_limit,
                "output_buffer_allocated_bytes": out_limit,
                "max_workers": cfg.tenant_max_running,
            },
            "status": {
                "input_buffer_used_bytes": in_used,
                "input_buffer_remaining_bytes": max(0, in_limit - in_used),
                "output_buffer_used_bytes": out_used,
                "output_buffer_remaining_bytes": max(0, out_limit - out_used),
                "workers_in_use": seen.running,
            },
        },
        "environment": {"update": 0},
    }
    return _answer(request, body)


@router.get("/batch/{batch_id}/status")
async def pipeline_status(
    request: Request, batch_id: str, caller: SparkCaller, mgr: Manager
) -> Response:
    received = mgr.clock()
    batch = await _spark_batch(mgr, caller, batch_id)
    return _answer(request, views.status_json(batch, request_ts=received, now=mgr.clock()))


@router.get("/batch/{batch_id}/chunkresults")
@router.get("/batch/{batch_id}/chunkresults/", include_in_schema=False)
async def chunk_results(
    request: Request, batch_id: str, caller: SparkCaller, mgr: Manager,
    max_: Annotated[int | None, Query(alias="max", ge=1)] = None,
    max_chunks: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Hand out finished chunks (up to ``max``, at most 100), freeing the output buffer."""
    received = mgr.clock()
    batch = await _spark_batch(mgr, caller, batch_id)
    limit = min(max_ or max_chunks or DEFAULT_MAX_CHUNKS, MOST_CHUNKS)
    batch, rows = await mgr.take_results(caller, batch_id, max_items=limit)
    status = views.status_json(batch, request_ts=received, now=mgr.clock())
    if not rows:
        # The document answers with the status object alone; the published SDK
        # (cspark's Pipeline.pull) reads ``status`` and ``data`` on every answer.
        # Both readers find what they read.
        return _answer(request, {**status, "data": [], "status": status})
    m = views.spark_meta(batch)
    key, patterns = m.get("unique_record_key"), m.get("output")
    keep = results.OutputFilter(patterns)
    data: list[dict[str, Any]] = []
    came_as_bson = False
    for row in rows:
        meta = orjson.loads(row.meta) if row.meta else {}
        came_as_bson = came_as_bson or bool(meta.get("b"))
        data.append(results.chunk_result(row, meta, key=key, keep=keep,
                                         output_given=patterns is not None))
    return _answer(request, {"data": data, "status": status}, came_as_bson)


@router.patch("/batch/{batch_id}", openapi_extra=_doc(schemas.PatchBody))
async def close_or_cancel(
    request: Request, batch_id: str, caller: SparkCaller, mgr: Manager, cfg: Config
) -> Response:
    """``{"batch_status": "closed"}`` or ``{"batch_status": "cancelled"}``."""
    await _spark_batch(mgr, caller, batch_id)
    doc, as_bson = await wire.read_document(request)
    body = _parse(schemas.PatchBody, doc)
    if body.batch_status == "closed":
        batch = await mgr.close_batch(caller, batch_id)
    else:
        batch = await mgr.cancel_batch(caller, batch_id, "cancelled through the Spark API")
    return _answer(request, views.batch_json(batch, now=mgr.clock()), as_bson)


@router.get("/batch/{batch_id}")
async def batch_information(
    request: Request, batch_id: str, caller: SparkCaller, mgr: Manager
) -> Response:
    batch = await _spark_batch(mgr, caller, batch_id)
    return _answer(request, views.batch_json(batch, now=mgr.clock(), detailed=True))


def _answer(request: Request, body: dict[str, Any], default_bson: bool = False) -> Response:
    wanted = wire.wants_bson(request)
    return wire.render(body, as_bson=default_bson if wanted is None else wanted)


def _parse(model: type[M], doc: dict[str, Any]) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        details = [
            {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False)
        ]
        first = details[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        raise errors.InvalidInput(f"{where}: {first['msg']}", details=details) from None


async def _spark_batch(mgr: BatchManager, caller: Principal, batch_id: str) -> Batch:
    batch = await mgr.get_batch(caller, batch_id)
    if not views.is_spark(batch):  # a batch of another dialect has no Spark face
        raise errors.NotFound(f"batch {batch_id} not found")
    return batch


def _spec(
    body: schemas.BatchCreate, service: services.Service, mgr: BatchManager, cfg: Settings
) -> BatchSpec:
    task = mgr.task(service.name, service.version)
    max_workers = body.max_workers or cfg.default_parallelism
    spark: dict[str, Any] = {
        "unique_record_key": body.unique_record_key,
        "output": body.output,
        "source_system": body.source_system,
        "correlation_id": body.correlation_id,
        "call_purpose": body.call_purpose,
        "initial_workers": body.initial_workers,
        "max_workers": max_workers,
        "runner_thread_count": body.runner_thread_count,
        "chunks_per_thread": body.chunks_per_thread,
        "acceptable_error_percentage": body.acceptable_error_percentage,
    }
    return BatchSpec(
        task=service.name, version=service.version, records_per_item=0, close=False,
        parallelism=None if max_workers is None else min(
            max_workers * body.runner_thread_count * body.chunks_per_thread, MAX_PARALLELISM),
        max_error_pct=body.acceptable_error_percentage,
        max_input_bytes=int(body.max_input_in_mb * schemas.MB),
        max_output_bytes=int(body.max_output_in_mb * schemas.MB),
        max_attempts=task.max_attempts or cfg.default_max_attempts,
        retry_backoff_s=cfg.retry_backoff_s, deliver=True,
        idle_timeout_s=cfg.spark_idle_timeout_s, metadata={"spark": spark}, dialect="spark",
    )


async def _no_records() -> AsyncIterator[list[Any]]:
    # A Spark batch starts empty; its records come in chunks.
    return
    yield
