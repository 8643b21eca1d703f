"""``batchd retry | pause | resume``: the operator actions on a batch."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from batchd.cli.common import app, console, session


class RetryStatus(StrEnum):
    FAILED = "failed"
    CANCELLED = "cancelled"


def _report(r: dict[str, Any], what: str) -> None:
    b = r["batch"]
    console.print(f"{b['id']} {b['display_status']}: {r['touched']} {what}", highlight=False)


@app.command(rich_help_panel="Batches")
def retry(
    batch_id: str,
    status: Annotated[list[RetryStatus] | None, typer.Option(
        "--status", help="Retry items in this state (repeatable; default: failed and "
                         "cancelled).")] = None,
    error: Annotated[str | None, typer.Option(
        "--error", help="Only items whose error (code or message) contains this text.")]
    = None,
    error_code: Annotated[str | None, typer.Option(
        "--error-code", help="Only items with this error code.")] = None,
) -> None:
    """Run a batch's failed or cancelled items again (fresh attempts); a finished batch
    reopens. Prints how many items were queued again."""
    with session() as c:
        r = c.retry(batch_id, [s.value for s in status] if status else None, error=error,
                    error_code=error_code)
    _report(r, "items queued again")


@app.command(rich_help_panel="Batches")
def pause(batch_id: str) -> None:
    """Hand out no more of a batch's items (running ones finish) until resumed."""
    with session() as c:
        _report(c.pause(batch_id), "queued items held back")


@app.command(rich_help_panel="Batches")
def resume(batch_id: str) -> None:
    """Hand out a paused batch's items again."""
    with session() as c:
        _report(c.resume(batch_id), "queued items released")
