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
