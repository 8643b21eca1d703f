"""Maps the core exception tree to the native wire shape ``{"detail": …}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from batchd.api.responses import JsonResponse
from batchd.domain import errors


def native_error(exc: errors.BatchdError) -> Response:
    detail = exc.details if exc.details is not None and exc.http_status == 422 else exc.message
    headers = {"Retry-After": "1"} if isinstance(exc, errors.Busy | errors.StoreError) else None
    if exc.http_status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JsonResponse({"detail": detail}, status_code=exc.http_status, headers=headers)


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
        return JsonResponse({"detail": _jsonable(detail)}, status_code=422)

    app.add_exception_handler(errors.BatchdError, on_batchd_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
