"""One exception tree; each dialect maps it to its own wire status and error shape.

An error carries a ``code`` (``not_found``, ``quota_exceeded``, …), a message and,
where a client can act on them, structured ``details`` in batchd's own words (which
quota, which limit, which field): never an HTTP status or a wire location. The
dialects' ``errors`` modules turn them into status codes and bodies.
"""

from __future__ import annotations

from typing import Any


class BatchdError(Exception):
    """Base of every error batchd raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(BatchdError):
    """A request that cannot be taken as given.

    Core gives ``details`` as a mapping: ``field`` (the setting at fault, e.g.
    ``runner``, ``cursor``, ``idempotency_key``), ``at`` (a position in the body: a
    line, row or record), ``problem`` and ``kind`` (``value_error``, ``json_invalid``, …);
    a JSON policy refusal (:mod:`batchd.domain.jsonpolicy`) adds ``path`` (keys and indexes
    inside the document) and, where known, ``offset`` (a byte offset).
    """

    code = "invalid_input"


class NotFound(BatchdError):
    code = "not_found"


class Unauthorized(BatchdError):
    code = "unauthorized"


class Forbidden(BatchdError):
    code = "forbidden"


class Conflict(BatchdError):
    code = "conflict"


class LimitExceeded(BatchdError):
    """A request larger than a size limit."""

    code = "limit_exceeded"


class Busy(BatchdError):
    """Input buffer full or storage busy; the client should retry later."""

    code = "busy"


class StoreError(BatchdError):
    code = "store_error"


class QuotaExceeded(BatchdError):
    """A monthly quota of the caller's tier (or key) would be passed; nothing was done.

    ``quota`` names it: ``api_calls``, ``items`` or ``cost_usd``; ``details`` holds
    ``{quota, limit, value}`` (the value the request would have brought it to).
    """

    code = "quota_exceeded"

    def __init__(self, message: str, *, quota: str, limit: float | None = None,
                 value: float | None = None) -> None:
        super().__init__(message, details={"quota": quota, "limit": limit, "value": value})
        self.quota = quota


class BatchTooLarge(BatchdError):
    """More items in one batch than the caller's tier allows.

    ``details``: ``{limit, size, tier}`` (``size``: the items the batch would hold).
    """

    code = "batch_too_large"

    def __init__(self, message: str, *, limit: int, size: int, tier: str) -> None:
        super().__init__(message, details={"limit": limit, "size": size, "tier": tier})
        self.limit = limit
        self.size = size
        self.tier = tier


class OverBudget(BatchdError):
    """A batch's estimated cost is above its own budget cap (``details``: est, cap)."""

    code = "over_budget"

    def __init__(self, message: str, *, est_usd: float, budget_usd: float) -> None:
        super().__init__(message, details={"est_usd": est_usd, "budget_usd": budget_usd})


class UnknownTask(InvalidInput):
    """A request names a task (a template, a job type) that is not registered."""

    code = "unknown_task"


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
