"""What a handler sees while it runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field


@dataclass(slots=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    reported: bool = False


_LOG = logging.getLogger("batchd.task")


@dataclass(slots=True)
class TaskContext:
    """Handed to every handler call.

    Attributes:
        item_id: the item's id (``itm_…``).
        batch_id: the batch's id (``bat_…``).
        attempt: 1 for the first run, 2 for the first retry, …
        runner: the runner name chosen for the batch, if any.
        logger: a logger carrying the ids.
    """

    item_id: str
    batch_id: str
    attempt: int
    runner: str | None = None
    logger: logging.Logger = _LOG
    usage: Usage = field(default_factory=Usage)
    # A plain flag: handlers in threads read it, the event loop sets it once.
    _cancelled: bool = False

    @property
    def cancelled(self) -> bool:
        """True once the item was cancelled; long handlers should check it and stop."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    def report_usage(
        self, *, tokens_in: int = 0, tokens_out: int = 0, cost_usd: float = 0.0
    ) -> None:
        """Add tokens and cost this call used; they are recorded with the outcome."""
        self.usage.tokens_in += int(tokens_in)
        self.usage.tokens_out += int(tokens_out)
        self.usage.cost_usd += float(cost_usd)
        self.usage.reported = True


class RecordError(Exception):
    """Return (or raise, per record) to fail one record without failing its item."""

    def __init__(self, message: str, *, code: str = "record_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
