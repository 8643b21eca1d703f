"""Following a batch to its end on a progress bar (``submit --wait``, ``wait``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column

from batchd.cli import views
from batchd.cli.common import EXIT_INTERRUPTED, err, say
from batchd.client.base import TERMINAL

if TYPE_CHECKING:
    from batchd.client import Client

POLL_S = 0.3


def _bar() -> Progress:
    # On a narrow terminal the bar and the tally give way (the tally wraps); the state,
    # the record counts and the time are never cut.
    return Progress(
        TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=None, table_column=Column(ratio=1)),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TextColumn("records {task.fields[tally]}", table_column=Column(overflow="fold")),
        TimeElapsedColumn(table_column=Column(no_wrap=True)),
        console=err, expand=True,
    )


def follow(c: Client, batch_id: str) -> dict[str, Any]:
    """Shows the batch's records on a bar until it ends; its final snapshot.

    Ctrl-C stops watching only: the batch runs on, and the message says how to follow
    it again or cancel it (exit code 130).
    """
    try:
        first = c.get(batch_id)  # an unknown batch is an error before any bar is drawn
        final = _watch(c, first)
    except KeyboardInterrupt:
        say(f"stopped following {batch_id}; the batch keeps running on the server.\n"
            f"  follow it again: batchd wait {batch_id}\n"
            f"  cancel it:       batchd cancel {batch_id}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    say(views.summary(final))
    return final


def _watch(c: Client, first: dict[str, Any]) -> dict[str, Any]:
    if first["status"] not in TERMINAL:
        say(f"following {first['id']} (Ctrl-C stops following; the batch keeps running)")
    with _bar() as bar:
        tid = bar.add_task("", total=None, tally="")

        def show(b: dict[str, Any]) -> None:
            bar.update(tid, description=views.state(b), total=b["records"]["total"] or None,
                       completed=views.records_done(b), tally=views.tally(b))

        show(first)
        if first["status"] in TERMINAL:
            return first
        return c.wait(first["id"], poll_s=POLL_S, on_progress=show)
