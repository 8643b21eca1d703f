"""The Anthropic dialect's error shape, in one place:
``{"type": "error", "error": {"type", "message"}}``; a refused request is a 400."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from batchd.api import errors as native
from batchd.api.responses import JsonResponse
from batchd.domain import errors

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"type": {"const": "error"}, "error": {"type": "object", "properties": {
        "type": {"type": "string"}, "message": {"type": "string"}},
        "required": ["type", "message"]}},
    "required": ["type", "error"],
}
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 409: "invalid_request_error", 413: "request_too_large",
         429: "rate_limit_error", 503: "overloaded_error"}


def body(message: str, status: int) -> dict[str, Any]:
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def anthropic_error(exc: errors.BatchdError) -> Response:
    status = native.status_of(exc)
    if status in (409, 422):
        status = 400
    return JsonResponse(native.jsonable(body(exc.message, status)), status_code=status,
                        headers=native.headers_of(exc))


def validation_error(exc: RequestValidationError) -> Response:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return JsonResponse(native.jsonable(body(f"{loc}: {first.get('msg')}", 400)),
                        status_code=400)


def bind(request: Request) -> None:
    """Errors of this request take the dialect's shape (the ingress calls it)."""
    request.state.error_handler = anthropic_error
    request.state.validation_handler = validation_error
