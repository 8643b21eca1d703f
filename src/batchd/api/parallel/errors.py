"""The dialect's error shape, in one place: the SDK's ``ErrorResponse``, ``{"type": "error",
"error": {"message", "ref_id", "detail"?}}``; a refused request is a 422 naming the field
in ``detail`` (``{"loc": [...], "type"}``)."""

from __future__ import annotations

import secrets
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
        "message": {"type": "string"}, "ref_id": {"type": "string"},
        "detail": {"type": ["object", "null"]}}, "required": ["message", "ref_id"]}},
    "required": ["type", "error"],
}


def error_object(message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """The SDK's ``ErrorObject``."""
    return {"message": message, "ref_id": f"ref_{secrets.token_hex(8)}", "detail": detail}


def body(message: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "error", "error": error_object(message, detail)}


def _detail(exc: errors.BatchdError) -> dict[str, Any] | None:
    if isinstance(exc, errors.InvalidRecord):  # a run of add_runs' ``inputs``
        loc = ["body", "inputs", exc.index, exc.field]
        return {"errors": [{"loc": loc, "msg": exc.problem, "type": "value_error"}]}
    problems = native.field_problems(exc)
    return {"errors": problems} if problems else None


def parallel_error(exc: errors.BatchdError) -> Response:
    status = native.status_of(exc)
    return JsonResponse(native.jsonable(body(exc.message, _detail(exc) if status == 422
                                             else None)),
                        status_code=status, headers=native.headers_of(exc))


def validation_error(exc: RequestValidationError) -> Response:
    problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                for e in exc.errors()]
    first = problems[0]
    where = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
    return JsonResponse(native.jsonable(body(f"{where}: {first['msg']}", {"errors": problems})),
                        status_code=422)


def bind(request: Request) -> None:
    """Errors of this request take the dialect's shape (the ingress calls it)."""
    request.state.error_handler = parallel_error
    request.state.validation_handler = validation_error
