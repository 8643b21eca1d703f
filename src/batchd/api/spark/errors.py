"""The Spark dialect's error shape, in one place.

The document shows no error body, so every Spark route answers errors as::

    {"error": {"status": 429, "code": "input_buffer_full", "message": "…", "details": null}}

``code`` comes from the core exception (``invalid_input``, ``not_found``,
``service_not_found``, ``input_buffer_full``, ``batch_too_large``, ``quota_exceeded``,
…); ``details`` lists the offending fields for validation errors (``loc``, ``msg``,
``type``) and carries the core error's own details otherwise (``{quota, limit,
value}``, ``{limit, size, tier}``). The body is BSON when the request was (see
:mod:`batchd.api.spark.wire`). Statuses are the native ones but for the codes below.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from batchd.api import errors as native
from batchd.api.spark import wire
from batchd.domain import errors

STATUS_BY_CODE = {"malformed_body": 400, "unsupported_media_type": 415}


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {
        "type": "object",
        "properties": {"status": {"type": "integer"}, "code": {"type": "string"},
                       "message": {"type": "string"}, "details": {}},
        "required": ["status", "code", "message", "details"],
    }},
    "required": ["error"],
}


def status_of(exc: errors.BatchdError) -> int:
    return STATUS_BY_CODE.get(exc.code) or native.status_of(exc)


def error_body(exc: errors.BatchdError) -> dict[str, Any]:
    details = native.field_problems(exc) if isinstance(exc, errors.InvalidInput) else None
    return {"error": {"status": status_of(exc), "code": exc.code,
                      "message": native.jsonable(exc.message),
                      "details": native.jsonable(details if details is not None else exc.details)}}


def spark_error(exc: errors.BatchdError, *, as_bson: bool) -> Response:
    return wire.render(error_body(exc), as_bson=as_bson, status_code=status_of(exc),
                       headers=native.headers_of(exc))


def validation_error(exc: RequestValidationError) -> errors.InvalidInput:
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
               for e in exc.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return errors.InvalidInput(f"{where}: {first['msg']}" if where else str(first["msg"]),
                               details=details)


def use_spark_errors(request: Request) -> None:
    """Errors of this request take the Spark shape (the ingress calls it)."""
    as_bson = bool(wire.wants_bson(request))
    request.state.error_handler = lambda exc: spark_error(exc, as_bson=as_bson)
    request.state.validation_handler = lambda exc: spark_error(
        validation_error(exc), as_bson=as_bson
    )

