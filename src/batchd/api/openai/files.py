"""``/v1/files``: upload (multipart, streamed into the database), list, retrieve, delete,
content (streamed out)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from batchd.api import ingress, openapi
from batchd.api.deps import Caller, body_stream
from batchd.api.openai import multipart, wire
from batchd.api.responses import JsonResponse
from batchd.core.files import Files
from batchd.domain import errors

router = APIRouter()
UPLOAD_PURPOSES = wire.upload_purposes()
MIN_EXPIRY_S, MAX_EXPIRY_S = 3600, 30 * 86400  # expires_after[seconds], as OpenAI takes it
UPLOAD_DOC = openapi.body_doc({"multipart/form-data": {
    "type": "object",
    "properties": {"file": {"type": "string", "format": "binary"},
                   "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
                   "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                   "expires_after[seconds]": {"type": "integer", "minimum": MIN_EXPIRY_S,
                                              "maximum": MAX_EXPIRY_S}},
    "required": ["file", "purpose"],
}})


def files_service(request: Request) -> Files:
    return request.app.state.v1_files  # type: ignore[no-any-return]


Service = Annotated[Files, Depends(files_service)]


def _invalid(message: str, param: str) -> errors.InvalidInput:
    return errors.InvalidInput(message, details={"param": param})


def expires_after_s(anchor: str | None, seconds: Any, *, param: str) -> int | None:
    """The seconds of an ``expires_after`` (``{anchor: "created_at", seconds}``), checked;
    None when not given."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise _invalid(f"Invalid value for '{param}.anchor': {anchor!r}; expected "
                       "'created_at'.", f"{param}.anchor")
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        value = 0
    if not MIN_EXPIRY_S <= value <= MAX_EXPIRY_S:
        raise _invalid(f"Invalid value for '{param}.seconds': {seconds!r}; expected an "
                       f"integer from {MIN_EXPIRY_S} to {MAX_EXPIRY_S}.", f"{param}.seconds")
    return value


@router.post("/files", openapi_extra=UPLOAD_DOC)
@ingress.accepts(ingress.BodyKind.STREAM)
async def create_file(request: Request, caller: Caller, files: Service) -> Response:
    """Upload a file (``purpose=batch`` for a batch's input); it is stored as it arrives."""
    boundary = multipart.boundary_of(request.headers.get("content-type", ""))
    form = multipart.Form()

    def check() -> tuple[str, str, float | None]:
        purpose = form.fields.get("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise _invalid(f"Invalid value for 'purpose': {purpose!r}; expected one of "
                           f"{', '.join(UPLOAD_PURPOSES)}.", "purpose")
        if not form.has_file:
            raise _invalid("Missing required parameter: 'file'.", "file")
        expiry = expires_after_s(form.fields.get("expires_after[anchor]"),
                                 form.fields.get("expires_after[seconds]"),
                                 param="expires_after")
        return purpose, form.filename or "upload", expiry

    row = await files.upload(caller, chunks=multipart.file_bytes(body_stream(request),
                                                                 boundary, form),
                             describe=check)
    return JsonResponse(wire.file_object(row))


@router.get("/files")
async def list_files(
    caller: Caller, files: Service, after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc", purpose: str | None = None,
) -> Response:
    found = await files.page(caller, after=after, limit=limit, ascending=order == "asc",
                             purpose=purpose)
    return JsonResponse(wire.page([wire.file_object(f) for f in found.files], found.has_more))


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, caller: Caller, files: Service) -> Response:
    return JsonResponse(wire.file_object(await files.get(caller, file_id)))


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, caller: Caller, files: Service) -> Response:
    found = await files.delete(caller, file_id)
    body: dict[str, Any] = {"id": found.id, "object": "file", "deleted": True}
    return JsonResponse(body)


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, caller: Caller, files: Service) -> Response:
    """The file's bytes, streamed."""
    row = await files.get(caller, file_id)
    return StreamingResponse(files.content(row), media_type="application/octet-stream",
                             headers={"Content-Length": str(row.bytes),
                                      "Content-Disposition":
                                      f'attachment; filename="{row.filename}"'})
