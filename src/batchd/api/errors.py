"""Core errors on the wire: the status of each, and the native shape ``{"detail": …}``.

:func:`status_of` is the status every dialect starts from (a dialect's own
``errors`` module overrides what its document says otherwise); :func:`native_error`
is the native API's body. Core errors carry a code and details in batchd's words;
this is where they become locations (``loc``) and statuses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from batchd.api.responses import JsonResponse
from batchd.domain import errors

# Most specific first: the first class an error is an instance of gives its status.
STATUS: tuple[tuple[type[errors.BatchdError], int], ...] = (
    (errors.UnknownTask, 400),
    (errors.InvalidInput, 422),
    (errors.NotFound, 404),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.Conflict, 409),
    (errors.LimitExceeded, 413),
    (errors.QuotaExceeded, 429),
    (errors.Busy, 429),
    (errors.StoreError, 503),
    (errors.BatchTooLarge, 400),
    (errors.OverBudget, 400),
)
# Errors of the layers above core, by code.
STATUS_BY_CODE = {"provider_error": 502, "unsupported_media_type": 415,
                  "method_not_allowed": 405}
RETRY_LATER = (errors.Busy, errors.StoreError)
# Where a setting that core names lives in a native request.
FIELD_LOC: dict[str, list[Any]] = {
    "runner": ["body", "runner"],
    "cursor": ["query", "cursor"],
    "idempotency_key": ["header", "Idempotency-Key"],
}


# The bodies above, as the OpenAPI document describes them.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"loc": {"type": "array"}, "msg": {"type": "string"},
                   "type": {"type": "string"}},
    "required": ["loc", "msg", "type"],
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"anyOf": [{"type": "string"},
                                        {"type": "array", "items": PROBLEM_SCHEMA}]}},
    "required": ["detail"],
}


def status_of(exc: errors.BatchdError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return STATUS_BY_CODE.get(exc.code, 400)


def headers_of(exc: errors.BatchdError) -> dict[str, str] | None:
    if isinstance(exc, RETRY_LATER):
        return {"Retry-After": "1"}
    if isinstance(exc, errors.Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    return None


def field_problems(exc: errors.BatchdError) -> list[dict[str, Any]] | None:
    """An invalid request's problems as ``[{loc, msg, type}]``, or None if it names none.

    Core names what is wrong (a field, a position in the body, a record); the layers
    above core may give the list itself.
    """
    if isinstance(exc, errors.InvalidRecord):
        loc: list[Any] = ["body", "items", exc.index]
        if exc.field != "input":
            loc.append(exc.field)
        kind = "schema_error" if exc.field == "input" else "value_error"
        return [{"loc": loc, "msg": exc.problem, "type": kind}]
    d = exc.details
    if isinstance(d, list):
        return d
    if not isinstance(d, Mapping) or not isinstance(exc, errors.InvalidInput):
        return None
    if "field" in d:
        loc = FIELD_LOC.get(d["field"], ["body", d["field"]])
    else:
        loc = ["body"] if d.get("at") is None else ["body", d["at"]]
        loc.extend(d.get("path") or ())
    return [{"loc": loc, "msg": d.get("problem", exc.message),
             "type": d.get("kind", "value_error")}]


def native_error(exc: errors.BatchdError) -> Response:
    status = status_of(exc)
    detail: Any = exc.message
    if status == 422:
        detail = field_problems(exc) or exc.message
    return JsonResponse({"detail": jsonable(detail)}, status_code=status,
                        headers=headers_of(exc))


def install(app: FastAPI) -> None:
    async def on_batchd_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.BatchdError)
        handler = getattr(request.state, "error_handler", None)
        return handler(exc) if handler is not None else native_error(exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        handler = getattr(request.state, "validation_handler", None)
        if handler is not None:
            return handler(exc)
        detail = [
            {k: v for k, v in e.items() if k in ("type", "loc", "msg", "input", "ctx")}
            for e in exc.errors()
        ]
        return JsonResponse({"detail": jsonable(detail)}, status_code=422)

    app.add_exception_handler(errors.BatchdError, on_batchd_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)


INT64 = (-(2**63), 2**63 - 1)


def jsonable(value: object) -> object:
    """``value`` as something any JSON (or BSON) writer takes, never raising: an error
    body may echo what the client sent (a huge integer, bytes, a lone surrogate, NaN)."""
    if isinstance(value, dict):
        return {_text(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if INT64[0] <= value <= INT64[1] else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return _text(value.decode("utf-8", "backslashreplace"))
    return _text(value if isinstance(value, str) else str(value))


def _text(value: object) -> str:
    s = value if isinstance(value, str) else str(value)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")
