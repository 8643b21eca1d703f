"""What every ``batchd`` command shares: the app, the consoles, the server session and
its one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from batchd.client import Client

app = typer.Typer(help="batchd: self-hosted batch processing.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Manage API keys (an admin key: its own tenant's; the operator key: any tenant's).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys", rich_help_panel="Tasks and keys")
console = Console()
err = Console(stderr=True)

EXIT_ERROR = 1
EXIT_PARTIAL = 3  # results of a batch that had not finished
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def say(text: str) -> None:
    """A line on stderr, as it is (no markup, no highlighting)."""
    err.print(text, markup=False, highlight=False, soft_wrap=True)


def detail_text(detail: Any) -> str:
    """A validation error list as ``loc: msg`` lines; anything else as it is."""
    if isinstance(detail, list) and all(isinstance(d, dict) for d in detail):
        return "\n".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', d)}" for d in detail
        )
    return str(detail)


def _url_source() -> str:
    if os.environ.get("BATCHD_URL"):
        return "from BATCHD_URL"
    return "the default; set BATCHD_URL to the server's address"


@contextmanager
def session() -> Iterator[Client]:
    """A client of the server in BATCHD_URL. A refusal is ``error <status>: <detail>``,
    an unreachable server one line naming the URL tried; both exit with code 1. Ctrl-C
    is one line too (code 130)."""
    import httpx

    from batchd.client import BatchdConnectionError, BatchdHTTPError, Client

    url = "?"
    try:
        with Client() as c:
            url = c.url
            yield c
    except BatchdHTTPError as exc:
        err.print(f"[red]error {exc.status_code}:[/red]", escape(detail_text(exc.detail)),
                  highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except BatchdConnectionError as exc:
        reason = str(exc.__cause__ or exc)
        say(f"batchd: cannot reach the server at {exc.url} ({_url_source()}): {reason}")
        raise typer.Exit(EXIT_ERROR) from None
    except httpx.HTTPError as exc:
        say(f"batchd: the request to {url} ({_url_source()}) failed: "
            f"{str(exc) or type(exc).__name__}")
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        say("batchd: interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def load_settings(**overrides: Any) -> Any:
    """The process's settings; unusable ones are one line and exit code 2, not a traceback."""
    from batchd import settings

    try:
        return settings.load_settings(**overrides)
    except settings.SettingsError as exc:
        say(f"batchd: {exc}")
        raise typer.Exit(2) from None
