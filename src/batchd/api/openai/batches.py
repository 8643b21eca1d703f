"""``/v1/batches``: create (from an uploaded input file), retrieve, list, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchd.api import ingress, jsonbody, openapi
from batchd.api.deps import Caller, Config, read_body
from batchd.api.openai import inputs, wire
from batchd.api.openai.files import MAX_EXPIRY_S, MIN_EXPIRY_S
from batchd.api.openai.files import Service as FilesService
from batchd.api.responses import JsonResponse
from batchd.core.v1batches import V1Batches
from batchd.domain import errors

router = APIRouter()
DIALECT = "openai"
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRY_S, le=MAX_EXPIRY_S)


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_file_id: str = Field(min_length=1)
    endpoint: Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    completion_window: Literal["24h"]
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16)
    output_expires_after: ExpiresAfter | None = None


def batches_service(request: Request) -> V1Batches:
    return request.app.state.v1_batches  # type: ignore[no-any-return]


Service = Annotated[V1Batches, Depends(batches_service)]


def _parse(raw: bytes) -> CreateBatch:
    try:
        return CreateBatch.model_validate(jsonbody.parse(raw))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = (f"Missing required parameter: '{param}'." if first["type"] == "missing"
                   else f"Invalid value for '{param}': {first['msg']}.")
        raise errors.InvalidInput(message, details={"param": param}) from None


@router.post("/batches", openapi_extra=openapi.body_doc({"application/json": CreateBatch}))
@ingress.accepts(ingress.BodyKind.CONTROL)
async def create_batch(request: Request, caller: Caller, batches: Service,
                       files: FilesService, cfg: Config) -> Response:
    """Create a batch from an uploaded ``purpose=batch`` file: its requests are checked
    line by line and handed to the engine; a file with problems makes a failed batch
    whose ``errors`` list them."""
    body = _parse(await read_body(request))
    source = await files.get(caller, body.input_file_id)
    if source.purpose != "batch":
        raise errors.InvalidInput(f"The input file {source.id} must have purpose 'batch'.",
                                  details={"param": "input_file_id"})
    records = inputs.records(files.lines(source), endpoint=body.endpoint,
                             max_requests=cfg.v1_batch_max_requests)
    row = await batches.create(caller, dialect=DIALECT, records=records,
                               endpoint=body.endpoint, input_file_id=source.id,
                               metadata=body.metadata, completion_window="24h",
                               output_expires_s=(body.output_expires_after.seconds
                                                 if body.output_expires_after else None))
    return JsonResponse(wire.batch_object(row))


@router.get("/batches")
async def list_batches(caller: Caller, batches: Service, after: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20) -> Response:
    found = await batches.page(caller, dialect=DIALECT, after=after, before=None, limit=limit)
    objects: list[dict[str, Any]] = [wire.batch_object(b) for b in found.batches]
    return JsonResponse(wire.page(objects, found.has_more))


@router.get("/batches/{batch_id}")
async def retrieve_batch(batch_id: str, caller: Caller, batches: Service) -> Response:
    return JsonResponse(wire.batch_object(await batches.get(caller, batch_id, dialect=DIALECT)))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, caller: Caller, batches: Service) -> Response:
    """Cancel: requests not yet sent are cancelled, what finished is kept in the files."""
    return JsonResponse(wire.batch_object(
        await batches.cancel(caller, batch_id, dialect=DIALECT)))
