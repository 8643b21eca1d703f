"""``batchd services``: publish Excel workbooks as Spark services, list their versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer
from rich.table import Table

from batchd.cli.common import app, console, err, session

services_app = typer.Typer(
    help="Spark services: publish an Excel workbook as a version (the operator key).",
    no_args_is_help=True,
)
app.add_typer(services_app, name="services", rich_help_panel="Tasks and keys")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _path_of(service: str) -> str:
    folder, sep, name = service.strip().strip("/").partition("/")
    if not sep or not folder or not name or "/" in name:
        raise typer.BadParameter(f"{service!r} is not folder/name", param_hint="--service")
    return f"/api/services/{quote(folder, safe='')}/{quote(name, safe='')}"


@services_app.command("publish")
def publish(
    file: Annotated[Path, typer.Argument(help="The .xlsx workbook.", exists=True,
                                         dir_okay=False, readable=True)],
    service: Annotated[str, typer.Option(help="The service, folder/name.")],
    version: Annotated[str, typer.Option(help="The new version, e.g. 1.0.0.")],
) -> None:
    """Publish FILE as VERSION of SERVICE; a workbook the engine cannot run is refused,
    naming the cell and the function. The version's URI is printed on the last line."""
    path = _path_of(service)
    content = file.read_bytes()
    with session() as c:
        got = c._json("POST", f"{path}/versions", content=content,
                      params={"version": version, "filename": file.name},
                      headers={"Content-Type": XLSX})
    err.print(f"published {got['filename']} ({got['size_bytes']} bytes, sha256 "
              f"{got['sha256'][:12]}…) as {got['uri']}", highlight=False)
    err.print(f"inputs: {', '.join(got['inputs']) or '(none)'}", highlight=False)
    err.print(f"outputs: {', '.join(got['outputs'])}", highlight=False)
    err.print(f"column-wise: {got['vectorised_share']:.0%} of the formulas", highlight=False)
    print(got["uri"])


@services_app.command("versions")
def versions(
    service: Annotated[str, typer.Argument(help="The service, folder/name.")],
) -> None:
    """A service's versions, oldest first, with their inputs and outputs."""
    path = _path_of(service)
    with session() as c:
        got = c._json("GET", path)
    t = Table("version", "kind", "inputs", "outputs", "version_id")
    for v in got["data"]:
        t.add_row(v["version"], v["kind"], ", ".join(v["inputs"]), ", ".join(v["outputs"]),
                  v["version_id"])
    console.print(t)
