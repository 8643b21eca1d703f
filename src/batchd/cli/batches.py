"""``batchd submit | wait | status | list | cancel | results``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from batchd.cli import views
from batchd.cli.common import EXIT_PARTIAL, app, console, err, say, session
from batchd.cli.progress import follow
from batchd.domain.states import BatchStatus


@app.command(rich_help_panel="Batches")
def submit(
    task: Annotated[str, typer.Argument(help="Task name.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".jsonl or .csv")],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until done.")] = False,
    records_per_item: Annotated[int | None, typer.Option(help="Records per item.")] = None,
    priority: Annotated[int | None, typer.Option(help="0-100.")] = None,
    parallelism: Annotated[int | None, typer.Option(help="Items in flight at once.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Cost cap.")] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first failure.")
    ] = False,
    max_error_pct: Annotated[float | None, typer.Option(
        help="Failed-record percentage above which the batch ends failed.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts per item.")] = None,
    item_timeout_s: Annotated[float | None, typer.Option(help="Seconds per attempt.")] = None,
    expires_after_s: Annotated[float | None, typer.Option(
        help="Seconds after which what has not run is cancelled (the batch ends expired).")]
    = None,
    webhook_url: Annotated[str | None, typer.Option(
        help="Sent a signed batch.finished event when the batch ends (the server's "
             "BATCHD_OUTBOUND_ALLOW must allow its address).")] = None,
    version: Annotated[str | None, typer.Option(help="Task version.")] = None,
    runner: Annotated[str | None, typer.Option(help="The task's runner.")] = None,
) -> None:
    """Submit FILE as a batch of TASK; prints the batch id."""
    settings: dict[str, Any] = {
        "records_per_item": records_per_item, "priority": priority,
        "parallelism": parallelism, "budget_usd": budget_usd, "fail_fast": fail_fast or None,
        "max_error_pct": max_error_pct, "max_attempts": max_attempts,
        "item_timeout_s": item_timeout_s, "expires_after_s": expires_after_s,
        "webhook_url": webhook_url, "version": version, "runner": runner,
    }
    with session() as c:
        batch = c.submit(task, file=file, **settings)
        r = batch["records"]
        say(f"submitted {batch['id']}: {r['total']} records in {batch['counts']['total']} items")
        if wait:
            follow(c, batch["id"])
    console.print(batch["id"])


@app.command("wait", rich_help_panel="Batches")
def wait_(batch_id: str) -> None:
    """Follow a batch on a progress bar until it ends (Ctrl-C stops watching, not the batch)."""
    with session() as c:
        follow(c, batch_id)


@app.command(rich_help_panel="Batches")
def status(batch_id: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a batch: what it is doing, its items, records, cost and why it stopped early."""
    with session() as c:
        b = c.get(batch_id)
    if json_out:
        console.print_json(orjson.dumps(b).decode())
        return
    console.print(views.status_table(b))


@app.command("list", rich_help_panel="Batches")
def list_(
    status: Annotated[BatchStatus | None, typer.Option(help="Only batches in this status.")] = None,
    task: Annotated[str | None, typer.Option(help="Only batches of this task.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Batches per page.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="The page after the one that said so.")]
    = None,
    json_out: Annotated[bool, typer.Option("--json", help="The page as JSON.")] = False,
) -> None:
    """List the batches your key may see, newest first."""
    with session() as c:
        found = c.list_batches(status.value if status else None, limit, task=task,
                               cursor=cursor)
    if json_out:
        console.print_json(orjson.dumps({"data": found, "next_cursor": found.next_cursor})
                           .decode())
        return
    console.print(views.batches_table(found))
    if found.next_cursor:
        where = "".join(f" {k} {v}" for k, v in (("--status", status and status.value),
                                                  ("--task", task)) if v)
        say(f"more: batchd list{where} --limit {limit} --cursor {found.next_cursor}")


@app.command(rich_help_panel="Batches")
def cancel(batch_id: str, reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Cancel a batch: queued items at once, running ones cooperatively."""
    with session() as c:
        b = c.cancel(batch_id, reason)
    console.print(f"{b['id']} {b['status']}")


@app.command(rich_help_panel="Batches")
def results(
    batch_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    format: Annotated[str | None, typer.Option(
        help="jsonl, json, csv or parquet; by default the file's suffix names it "
             "(.jsonl/.ndjson, .json, .csv, .parquet/.pq).")] = None,
    partial: Annotated[bool, typer.Option(
        "--partial", help="Accept the records finished so far of a batch still running "
                          "(else that is exit code 3).")] = False,
) -> None:
    """Download a batch's results."""
    from batchd.client import base

    try:
        fmt = base.results_format(output, format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="-o / --output, --format") from None
    with session() as c:
        before = c.get(batch_id)
        n = c.download_results(batch_id, output, format=fmt)
    err.print(f"wrote {n} bytes of {fmt} to {escape(str(output))}", soft_wrap=True)
    if before["status"] in base.TERMINAL:
        return
    r = before["records"]
    say(f"{batch_id} is {views.state(before)}: the file holds only the records finished "
        f"so far (about {views.records_done(before)} of {r['total']}); "
        + ("as asked (--partial)" if partial else
           f"run again once it has ended (batchd wait {batch_id}), or pass --partial"))
    if not partial:
        raise typer.Exit(EXIT_PARTIAL)
