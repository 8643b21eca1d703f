"""``batchd``: serve, run workers, and drive a server (reads BATCHD_URL and BATCHD_API_KEY)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from batchd.cli import actions, batches, details, services  # noqa: F401  (their commands join the app)
from batchd.cli.common import app, console, err, keys_app, load_settings, session

__all__ = ["app"]


@app.command(rich_help_panel="Running batchd")
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (BATCHD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (BATCHD_PORT).")] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only.")] = False,
) -> None:
    """Start the API server (with a worker inside, unless --no-worker)."""
    from batchd.cli import startup

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if no_worker:
        overrides["run_worker"] = False
    startup.serve(load_settings(**overrides))


@app.command(rich_help_panel="Running batchd")
def worker() -> None:
    """Run a standalone worker on the database in BATCHD_DATABASE_URL."""
    from batchd.cli import startup

    startup.run_worker(load_settings())


@app.command(rich_help_panel="Tasks and keys")
def tasks() -> None:
    """List the server's tasks."""
    with session() as c:
        rows = c.tasks()
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
    with session() as c:
        k = c.create_key(tenant, role=role, tier=tier, owner=owner, limits=overrides)
    err.print(f"key {k['id']} for tenant {k['tenant']} (role {k['role']}, tier {k['tier']})")
    print(k["key"])


if __name__ == "__main__":
    app()
