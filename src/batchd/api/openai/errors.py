"""The OpenAI dialect's error shape, in one place: ``{"error": {message, type, param, code}}``.

Statuses are the native ones (:func:`batchd.api.errors.status_of`) except that a request
the dialect refuses field by field is a 400, as OpenAI answers it.
"""

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
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
        "required": ["message", "type"]}},
    "required": ["error"],
}
TYPES = {401: "invalid_request_error", 403: "permission_error", 404: "invalid_request_error",
         409: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         503: "server_error"}


def body(message: str, *, status: int, param: str | None = None, code: str | None = None
         ) -> dict[str, Any]:
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _param(exc: errors.BatchdError) -> str | None:
    d = exc.details
    if isinstance(d, dict):
        field = d.get("field") or d.get("param")
        return str(field) if field else None
    return None


def openai_error(exc: errors.BatchdError) -> Response:
    status = native.status_of(exc)
    if status == 422:
        status = 400
    code = "invalid_api_key" if isinstance(exc, errors.Unauthorized) else exc.code
    return JsonResponse(native.jsonable(body(exc.message, status=status, param=_param(exc),
                                             code=code)),
                        status_code=status, headers=native.headers_of(exc))


def validation_error(exc: RequestValidationError) -> Response:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    message = f"Invalid value for '{param}': {first.get('msg')}" if param else str(
        first.get("msg"))
    return JsonResponse(native.jsonable(body(message, status=400, param=param,
                                             code="invalid_value")), status_code=400)


def bind(request: Request) -> None:
    """Errors of this request take the dialect's shape (the ingress calls it)."""
    request.state.error_handler = openai_error
    request.state.validation_handler = validation_error
