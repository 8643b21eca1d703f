"""The dialect's error shape, ``{"error", "message", "request_id"}``, and request ids."""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from batchd.api import errors as native
from batchd.api.responses import JsonResponse
from batchd.domain import errors

QUOTA_ERRORS = {
    "api_calls": "ApiCallQuotaExceeded",
    "items": "SimulationQuotaExceeded",
    "cost_usd": "CostQuotaExceeded",
}
# Most specific first: the first class an error is an instance of names it.
ERROR_NAMES: tuple[tuple[type[errors.BatchdError], str], ...] = (
    (errors.BatchTooLarge, "BatchTooLarge"),
    (errors.OverBudget, "BudgetExceeded"),
    (errors.UnknownTask, "UnknownTemplate"),
    (errors.InvalidInput, "ValidationError"),
    (errors.Unauthorized, "Unauthorized"),
    (errors.Forbidden, "Forbidden"),
    (errors.NotFound, "NotFound"),
    (errors.Conflict, "Conflict"),
    (errors.LimitExceeded, "PayloadTooLarge"),
    (errors.Busy, "TooManyRequests"),
    (errors.StoreError, "ServiceUnavailable"),
)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def error_name(exc: errors.BatchdError) -> str:
    if isinstance(exc, errors.QuotaExceeded):
        return QUOTA_ERRORS.get(exc.quota, "QuotaExceeded")
    for cls, name in ERROR_NAMES:
        if isinstance(exc, cls):
            return name
    return "BadRequest"


def message_of(exc: errors.BatchdError) -> str:
    """The message, in the document's words where core's differ."""
    if isinstance(exc, errors.BatchTooLarge):
        return (f"a batch holds at most {exc.limit} simulations for this key ({exc.tier} "
                f"tier); this one has {exc.size}")
    if isinstance(exc, errors.OverBudget):
        return exc.message.replace("budget cap", "budget_cap_usd")
    return exc.message


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or new_request_id(request)


def new_request_id(request: Request) -> str:
    # A caller's own X-Request-ID is kept, so its logs and ours can be matched.
    given = request.headers.get("x-request-id", "")
    return given if REQUEST_ID.match(given) else f"req_{secrets.token_hex(12)}"


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                   "request_id": {"type": "string"}},
    "required": ["error", "message", "request_id"],
}


def error_response(request: Request, exc: errors.BatchdError) -> Response:
    rid = request_id(request)
    headers = {"X-Request-ID": rid}
    if isinstance(exc, native.RETRY_LATER):
        headers["Retry-After"] = "1"
    return JsonResponse(
        {"error": error_name(exc), "message": native.jsonable(message_of(exc)),
         "request_id": rid},
        status_code=native.status_of(exc), headers=headers,
    )


def validation_response(request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    )
    return error_response(request, errors.InvalidInput(problems or "invalid request"))


def bind(request: Request) -> None:
    """Give the request an id and this dialect's error shape (the ingress calls it)."""
    request.state.request_id = new_request_id(request)
    request.state.error_handler = lambda exc: error_response(request, exc)
    request.state.validation_handler = lambda exc: validation_response(request, exc)
