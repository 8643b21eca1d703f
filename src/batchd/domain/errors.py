"""One exception tree; each dialect maps it to its own wire error shape."""

from __future__ import annotations

from typing import Any


class BatchdError(Exception):
    """Base of every error batchd raises on purpose."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(BatchdError):
    code = "invalid_input"
    http_status = 422


class NotFound(BatchdError):
    code = "not_found"
    http_status = 404


class Unauthorized(BatchdError):
    code = "unauthorized"
    http_status = 401


class Forbidden(BatchdError):
    code = "forbidden"
    http_status = 403


class Conflict(BatchdError):
    code = "conflict"
    http_status = 409


class LimitExceeded(BatchdError):
    """A size or buffer limit; retryable once the buffer drains."""

    code = "limit_exceeded"
    http_status = 413


class Busy(BatchdError):
    """Input buffer full or storage busy; the client should retry later."""

    code = "busy"
    http_status = 429


class StoreError(BatchdError):
    code = "store_error"
    http_status = 503


class QuotaExceeded(BatchdError):
    """A monthly quota of the caller's tier (or key) would be passed; nothing was done.

    ``quota`` names it: ``api_calls``, ``items`` or ``cost_usd``.
    """

    code = "quota_exceeded"
    http_status = 429

    def __init__(self, message: str, *, quota: str) -> None:
        super().__init__(message)
        self.quota = quota


class BatchTooLarge(BatchdError):
    """More items in one batch than the caller's tier allows."""

    code = "batch_too_large"
    http_status = 400


class OverBudget(BatchdError):
    """A batch's estimated cost is above its own budget cap."""

    code = "over_budget"
    http_status = 400


class UnknownTask(InvalidInput):
    """A request names a task (a template, a job type) that is not registered."""

    code = "unknown_task"
    http_status = 400


class InvalidRecord(InvalidInput):
    """One record of a request is invalid: ``index`` is its position, ``field`` what is wrong
    (``input`` for a schema error, ``runner``, ``webhook``), ``problem`` the error."""

    def __init__(
        self, message: str, *, index: int, problem: str, field: str = "input",
        details: Any = None,
    ) -> None:
        super().__init__(message, details=details)
        self.index = index
        self.problem = problem
        self.field = field
