"""Rendering the dashboard's pages: one Jinja2 environment, the filters its templates use,
and the headers every page carries."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from fastapi.responses import HTMLResponse

from batchd.domain import states
from batchd.domain.models import Batch

# Scripts and styles come from /ui/static only; no page may be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(ts: float | None) -> str:
    if ts is None:
        return "—"
    return f"{duration(max(0.0, time.time() - ts))} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def number(value: float | int | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def pretty(value: Any) -> str:
    """JSON for people: indented; bytes are stored JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = orjson.loads(bytes(value))
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def display(b: Batch, now: float) -> str:
    return states.display_state(b, now=now).value


def query(args: dict[str, Any], **more: Any) -> str:
    """A query string of the non-empty ``args`` and ``more``."""
    return urlencode({k: v for k, v in {**args, **more}.items() if v not in (None, "")})


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("batchd.api.ui", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, duration=duration, usd=usd, number=number,
                       pretty=pretty)
    env.globals.update(display=display, query=query)
    return env


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
