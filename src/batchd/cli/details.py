"""``batchd items`` and ``batchd webhooks``: what happened to each item and each delivery."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer

from batchd.cli import views
from batchd.cli.common import app, console, say, session
from batchd.domain.states import ItemStatus
from batchd.domain.webhooks import MessageStatus

# The statuses an item is listed in (a staged item is invisible until its upload ends).
ItemFilter = StrEnum("ItemFilter", {s.name: s.value for s in ItemStatus
                                    if s is not ItemStatus.STAGED})


def _print_json(data: Any) -> None:
    console.print_json(orjson.dumps(data).decode())


def _more(command: str, cursor: str | None) -> None:
    if cursor:
        say(f"more: {command} --cursor {cursor}")


@app.command(rich_help_panel="Batches")
def items(
    batch_id: str,
    item_id: Annotated[str | None, typer.Argument(
        help="One item, in full: input, output, error, usage.")] = None,
    status: Annotated[ItemFilter | None, typer.Option(help="Only items in this status.")]
    = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Items per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The page after the one that said so.")]
    = None,
    json_out: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """List a batch's items (with each one's error), or show one item."""
    with session() as c:
        if item_id is not None:
            _print_json(c.get_item(batch_id, item_id))
            return
        found = c.list_items(batch_id, status.value if status else None, limit, cursor=cursor)
    if json_out:
        _print_json({"data": found, "next_cursor": found.next_cursor})
        return
    console.print(views.items_table(found))
    where = f" --status {status.value}" if status else ""
    _more(f"batchd items {batch_id}{where} --limit {limit}", found.next_cursor)


@app.command(rich_help_panel="Batches")
def webhooks(
    message_id: Annotated[str | None, typer.Argument(
        help="One message, with the log of its delivery attempts.")] = None,
    batch: Annotated[str | None, typer.Option(help="Only this batch's messages.")] = None,
    status: Annotated[MessageStatus | None, typer.Option(help="Only messages in this status.")]
    = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Messages per page.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The page after the one that said so.")]
    = None,
    json_out: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Webhook deliveries, newest first: their status, attempts and last error."""
    with session() as c:
        if message_id is not None:
            message = c.get_webhook(message_id)
            if json_out:
                _print_json(message)
                return
            console.print(views.webhooks_table([message]))
            say(f"url: {message['url']}")
            console.print(views.attempts_table(message.get("attempts_log", [])))
            return
        found = c.webhooks(batch, status.value if status else None, limit, cursor=cursor)
    if json_out:
        _print_json({"data": found, "next_cursor": found.next_cursor})
        return
    console.print(views.webhooks_table(found, with_batch=batch is None))
    where = "".join(f" {k} {v}" for k, v in (("--batch", batch), ("--status", status)) if v)
    _more(f"batchd webhooks{where} --limit {limit}", found.next_cursor)
