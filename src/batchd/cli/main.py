"""``batchd``: serve, run workers, and drive a server (reads BATCHD_URL and BATCHD_API_KEY)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="batchd: self-hosted batch processing.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Manage API keys (an admin key: its own tenant's; the operator key: any tenant's).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)


def _client() -> Any:
    from batchd.client import Client

    return Client()


def _fail(exc: Exception) -> None:
    from batchd.client import BatchdHTTPError

    if isinstance(exc, BatchdHTTPError):
        err.print(f"[red]error {exc.status_code}:[/red]", escape(_detail_text(exc.detail)),
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    raise exc


def _detail_text(detail: Any) -> str:
    """A validation error list as ``loc: msg`` lines; anything else as it is."""
    if isinstance(detail, list) and all(isinstance(d, dict) for d in detail):
        return "\n".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', d)}" for d in detail
        )
    return str(detail)


def _settings(**overrides: Any) -> Any:
    """The process's settings; unusable ones are one line and exit code 2, not a traceback."""
    from batchd import settings

    try:
        return settings.load_settings(**overrides)
    except settings.SettingsError as exc:
        err.print(f"batchd: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (BATCHD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (BATCHD_PORT).")] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only.")] = False,
) -> None:
    """Start the API server (with a worker inside, unless --no-worker)."""
    import uvicorn

    from batchd.api.app import create_app

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if no_worker:
        overrides["run_worker"] = False
    settings = _settings(**overrides)
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                            log_level="warning", timeout_graceful_shutdown=10)
    # Bound here so the message names the real port (BATCHD_PORT=0 lets the system pick).
    sock = config.bind_socket()
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    err.print(f"batchd serving on http://{shown_host}:{bound_port} "
              f"({settings.database_url.split('://')[0]})", soft_wrap=True)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(3)


@app.command()
def worker() -> None:
    """Run a standalone worker on the database in BATCHD_DATABASE_URL."""
    from batchd.core import scheduling
    from batchd.core.db import open_database
    from batchd.exec.local import LocalExecutor
    from batchd.exec.worker import Worker
    from batchd.tasks.registry import load_tasks

    settings = _settings()

    async def main() -> None:
        store = open_database(settings.database_url, **settings.store_options())
        await store.open()
        executor = LocalExecutor(threads=settings.worker_threads,
                                 processes=settings.worker_processes)
        w = Worker(store=store, registry=load_tasks(
            settings.task_modules(), examples=settings.load_example_tasks,
            entry_points=settings.load_entry_points), executor=executor, settings=settings,
            retry_delay=scheduling.retry_delay_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await w.start()
        err.print(f"batchd worker {w.owner} running")
        await stop.wait()
        await w.stop()
        executor.close()
        await store.close()

    asyncio.run(main())


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=err,
    )


@app.command()
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
    version: Annotated[str | None, typer.Option(help="Task version.")] = None,
) -> None:
    """Submit FILE as a batch of TASK; prints the batch id."""
    settings = {"records_per_item": records_per_item, "priority": priority,
                "parallelism": parallelism, "budget_usd": budget_usd,
                "fail_fast": fail_fast or None, "version": version}
    with _client() as c:
        try:
            batch = c.submit(task, file=file, **settings)
        except Exception as exc:
            _fail(exc)
        err.print(f"submitted {batch['id']}: {batch['counts']['total']} items")
        if wait:
            with _progress_bar() as bar:
                tid = bar.add_task(batch["id"], total=batch["counts"]["total"] or 1, detail="")

                def show(b: dict[str, Any]) -> None:
                    n = b["counts"]
                    done = n["succeeded"] + n["failed"] + n["cancelled"]
                    bar.update(tid, total=n["total"] or 1, completed=done,
                               detail=f"{b['status']} ok={n['succeeded']} failed={n['failed']}")

                batch = c.wait(batch["id"], poll_s=0.3, on_progress=show)
            err.print(f"{batch['id']} {batch['status']}")
        console.print(batch["id"])


@app.command()
def status(batch_id: str, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show a batch."""
    with _client() as c:
        try:
            b = c.get(batch_id)
        except Exception as exc:
            _fail(exc)
    if json_out:
        console.print_json(orjson.dumps(b).decode())
        return
    t = Table(show_header=False)
    for key in ("id", "task", "version", "status", "priority", "parallelism", "created_at",
                "finished_at"):
        t.add_row(key, str(b[key]))
    t.add_row("items", " ".join(f"{k}={v}" for k, v in b["counts"].items()))
    t.add_row("records", " ".join(f"{k}={v}" for k, v in b["records"].items()))
    t.add_row("cost", " ".join(f"{k}={v}" for k, v in b["cost"].items()))
    if b["error"]:
        t.add_row("error", str(b["error"]))
    console.print(t)


@app.command()
def results(
    batch_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    format: Annotated[str | None, typer.Option(
        help="jsonl, json, csv or parquet; by default the file's suffix names it "
             "(.jsonl/.ndjson, .json, .csv, .parquet/.pq).")] = None,
) -> None:
    """Download a batch's results."""
    from batchd.client import base

    try:
        fmt = base.results_format(output, format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="-o / --format") from None
    with _client() as c:
        try:
            n = c.download_results(batch_id, output, format=fmt)
        except Exception as exc:
            _fail(exc)
    err.print(f"wrote {n} bytes of {fmt} to {escape(str(output))}", soft_wrap=True)


@app.command()
def cancel(batch_id: str, reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Cancel a batch: queued items at once, running ones cooperatively."""
    with _client() as c:
        try:
            b = c.cancel(batch_id, reason)
        except Exception as exc:
            _fail(exc)
    console.print(f"{b['id']} {b['status']}")


@app.command()
def tasks() -> None:
    """List the server's tasks."""
    with _client() as c:
        try:
            rows = c.tasks()
        except Exception as exc:
            _fail(exc)
    t = Table("name", "version", "kind", "description")
    for row in rows:
        t.add_row(row["name"], row["version"], row["kind"], row["description"].split("\n")[0])
    console.print(t)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(
        help="Tenant name (an admin key: its own; the operator key: any, created if new).")],
    role: Annotated[str, typer.Option(
        help="user, supervisor, admin or operator (operator: only with an operator key).")]
    = "user",
    tier: Annotated[str | None, typer.Option(help="free, basic, pro or enterprise.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner id recorded on batches.")] = None,
    limits: Annotated[str | None, typer.Option(
        help='JSON overrides of the tier\'s limits, e.g. \'{"api_calls": 500}\'.')] = None,
) -> None:
    """Create an API key; the key alone is printed on the last line."""
    try:
        overrides = orjson.loads(limits) if limits else None
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--limits") from None
    with _client() as c:
        try:
            k = c.create_key(tenant, role=role, tier=tier, owner=owner, limits=overrides)
        except Exception as exc:
            _fail(exc)
    err.print(f"key {k['id']} for tenant {k['tenant']} (role {k['role']}, tier {k['tier']})")
    print(k["key"])


if __name__ == "__main__":
    app()
