"""The Spark dialect's error shape, in one place.

The document shows no error body, so every Spark route answers errors as::

    {"error": {"status": 429, "code": "input_buffer_full", "message": "…", "details": null}}

``code`` comes from the core exception (``invalid_input``, ``not_found``,
``service_not_found``, ``input_buffer_full``, …); ``details`` lists the offending
fields for validation errors (``loc``, ``msg``, ``type``). The body is BSON when the
request was (see :mod:`batchd.api.spark.wire`).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from batchd.api.spark import wire
from batchd.domain import errors


class OutputBufferFull(errors.Busy):
    """The tenant's output buffers are full: new chunks wait until results are pulled."""

    code = "output_buffer_full"


def error_body(exc: errors.BatchdError) -> dict[str, Any]:
    return {"error": {"status": exc.http_status, "code": exc.code, "message": exc.message,
                      "details": _plain(exc.details)}}


def spark_error(exc: errors.BatchdError, *, as_bson: bool) -> Response:
    headers: dict[str, str] | None = None
    if isinstance(exc, errors.Busy | errors.StoreError):
        headers = {"Retry-After": "1"}
    elif exc.http_status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return wire.render(error_body(exc), as_bson=as_bson, status_code=exc.http_status,
                       headers=headers)


def validation_error(exc: RequestValidationError) -> errors.InvalidInput:
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
               for e in exc.errors()]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return errors.InvalidInput(f"{where}: {first['msg']}" if where else str(first["msg"]),
                               details=details)


async def use_spark_errors(request: Request) -> None:
    """Router dependency: errors of this request take the Spark shape."""
    as_bson = bool(wire.wants_bson(request))
    request.state.error_handler = lambda exc: spark_error(exc, as_bson=as_bson)
    request.state.validation_handler = lambda exc: spark_error(
        validation_error(exc), as_bson=as_bson
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
