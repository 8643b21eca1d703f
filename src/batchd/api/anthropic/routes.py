"""``/v1/messages/batches``: create, retrieve, list, cancel, delete, results."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from batchd.api import ingress, openapi
from batchd.api.anthropic import stream, wire
from batchd.api.deps import Caller, Config, body_stream
from batchd.api.responses import JsonResponse
from batchd.core.v1batches import V1Batches
from batchd.domain import errors
from batchd.domain.records import ExportRow

router = APIRouter()
DIALECT = "anthropic"
MAX_BODY_BYTES = 256 * 1024 * 1024
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
GROUP = 2000
CREATE_DOC = openapi.body_doc({"application/json": {
    "type": "object",
    "properties": {"requests": {"type": "array", "minItems": 1, "items": {
        "type": "object", "properties": {"custom_id": {"type": "string"},
                                         "params": {"type": "object"}},
        "required": ["custom_id", "params"]}}},
    "required": ["requests"],
}})


def batches_service(request: Request) -> V1Batches:
    return request.app.state.v1_batches  # type: ignore[no-any-return]


Service = Annotated[V1Batches, Depends(batches_service)]


def _invalid(message: str) -> errors.InvalidInput:
    return errors.InvalidInput(message)


def _check(i: int, req: Any, seen: set[str]) -> dict[str, Any]:
    where = f"requests.{i}"
    if not isinstance(req, dict):
        raise _invalid(f"{where}: Input should be an object")
    custom_id, params = req.get("custom_id"), req.get("params")
    if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
        raise _invalid(f"{where}.custom_id: must be 1 to 64 letters, digits, '-' or '_'")
    if custom_id in seen:
        raise _invalid(f"{where}.custom_id: the custom_id {custom_id!r} is used by another "
                       "request of this batch; each must be unique")
    seen.add(custom_id)
    if not isinstance(params, dict):
        raise _invalid(f"{where}.params: Field required")
    for field, kind in (("model", str), ("max_tokens", int), ("messages", list)):
        if not isinstance(params.get(field), kind) or (kind is not str and not params[field]):
            raise _invalid(f"{where}.params.{field}: Field required")
    return {"custom_id": custom_id, "url": "/v1/messages", "body": params}


async def _records(chunks: AsyncIterator[bytes], *, most: int, max_request_bytes: int
                   ) -> AsyncIterator[list[Any]]:
    """The checked requests in groups, as the body arrives."""
    seen: set[str] = set()
    group: list[Any] = []
    requests = stream.array_member(chunks, key="requests", max_body_bytes=MAX_BODY_BYTES,
                                   max_element_bytes=max_request_bytes)
    async for req in requests:
        if len(seen) >= most:
            raise _invalid(f"requests: at most {most} requests in a batch")
        group.append(_check(len(seen), req, seen))
        if len(group) >= GROUP:
            yield group
            group = []
    if not seen:
        raise _invalid("requests: a non-empty list of requests is required")
    if group:
        yield group


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post("/batches", openapi_extra=CREATE_DOC)
@ingress.accepts(ingress.BodyKind.STREAM)
async def create(request: Request, caller: Caller, batches: Service, cfg: Config) -> Response:
    """Create a batch of Messages requests, read and checked as the body arrives (nothing
    is kept unless every request is good)."""
    records = _records(body_stream(request), most=cfg.v1_message_batch_max_requests,
                       max_request_bytes=cfg.max_record_bytes)
    row = await batches.create(caller, dialect=DIALECT, records=records,
                               endpoint="/v1/messages", input_file_id=None, metadata=None)
    return JsonResponse(wire.batch_object(row, base_url=_base(request)))


@router.get("/batches")
async def list_batches(
    request: Request, caller: Caller, batches: Service, before_id: str | None = None,
    after_id: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Response:
    found = await batches.page(caller, dialect=DIALECT, after=after_id, before=before_id,
                               limit=limit)
    data = [wire.batch_object(b, base_url=_base(request)) for b in found.batches]
    return JsonResponse({"data": data, "has_more": found.has_more,
                         "first_id": data[0]["id"] if data else None,
                         "last_id": data[-1]["id"] if data else None})


@router.get("/batches/{batch_id}")
async def retrieve(batch_id: str, request: Request, caller: Caller, batches: Service
                   ) -> Response:
    row = await batches.get(caller, batch_id, dialect=DIALECT)
    return JsonResponse(wire.batch_object(row, base_url=_base(request)))


@router.post("/batches/{batch_id}/cancel")
async def cancel(batch_id: str, request: Request, caller: Caller, batches: Service
                 ) -> Response:
    row = await batches.cancel(caller, batch_id, dialect=DIALECT)
    return JsonResponse(wire.batch_object(row, base_url=_base(request)))


@router.delete("/batches/{batch_id}")
async def delete(batch_id: str, caller: Caller, batches: Service) -> Response:
    row = await batches.delete(caller, batch_id, dialect=DIALECT)
    return JsonResponse({"id": row.id, "type": "message_batch_deleted"})


@router.get("/batches/{batch_id}/results")
async def results(batch_id: str, caller: Caller, batches: Service) -> Response:
    """Every request's result, one JSON line each, streamed."""
    row, rows = await batches.results(caller, batch_id, dialect=DIALECT)
    ended_as = row.engine_status or ""

    async def lines(found: AsyncIterator[ExportRow]) -> AsyncIterator[bytes]:
        async for r in found:
            yield wire.result_line(r, ended_as)

    return StreamingResponse(lines(rows), media_type="application/binary")
