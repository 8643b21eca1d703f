"""What the sync and async clients share: configuration, request shapes, errors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

TERMINAL = frozenset({"completed", "partial", "failed", "cancelled", "expired"})
UPLOAD_CHUNK = 1 << 20
RESULT_FORMATS = ("jsonl", "json", "csv", "parquet")
FORMAT_OF_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
                    ".parquet": "parquet", ".pq": "parquet"}


DEFAULT_URL = "http://127.0.0.1:8080"


class BatchdHTTPError(Exception):
    """The server answered with an error status."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class BatchdConnectionError(httpx.TransportError):
    """No batchd server answers at ``url`` (an ``httpx.TransportError``, as before)."""

    def __init__(self, url: str, cause: Exception) -> None:
        reason = str(cause) or type(cause).__name__
        super().__init__(f"cannot reach the batchd server at {url}: {reason}")
        self.url = url


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """Turns a failure to connect into a :class:`BatchdConnectionError` naming ``url``."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise BatchdConnectionError(url, exc) from exc


class Page(list[dict[str, Any]]):
    """One page of a listing: its rows, and ``next_cursor`` (None on the last page) to
    pass as ``cursor=`` for the next."""

    def __init__(self, rows: Iterable[dict[str, Any]], next_cursor: str | None) -> None:
        super().__init__(rows)
        self.next_cursor = next_cursor


@dataclass(slots=True)
class Call:
    """One request of the native API, as both clients send it."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def config(url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    base = (url or os.environ.get("BATCHD_URL") or DEFAULT_URL).rstrip("/")
    key = api_key or os.environ.get("BATCHD_API_KEY")
    return base, ({"Authorization": f"Bearer {key}"} if key else {})


def _query(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def list_batches(status: str | None, task: str | None, limit: int,
                 cursor: str | None) -> Call:
    return Call("GET", "/api/batches",
                params=_query(status=status, task=task, limit=limit, cursor=cursor))


def list_items(batch_id: str, status: str | None, limit: int, cursor: str | None) -> Call:
    return Call("GET", f"/api/batches/{batch_id}/items",
                params=_query(status=status, limit=limit, cursor=cursor))


def list_webhooks(batch_id: str | None, status: str | None, limit: int,
                  cursor: str | None) -> Call:
    return Call("GET", "/api/webhooks",
                params=_query(batch_id=batch_id, status=status, limit=limit, cursor=cursor))


def retry(batch_id: str, status: str | Iterable[str] | None, error: str | None,
          error_code: str | None) -> Call:
    wanted = [status] if isinstance(status, str) else None if status is None else list(status)
    return Call("POST", f"/api/batches/{batch_id}/retry",
                json=_query(status=wanted, error=error, error_code=error_code))


def action(batch_id: str, name: str) -> Call:
    """``pause`` or ``resume``."""
    return Call("POST", f"/api/batches/{batch_id}/{name}")


def page(body: dict[str, Any]) -> Page:
    return Page(body["data"], body.get("next_cursor"))


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except Exception:
            detail = response.text
        raise BatchdHTTPError(response.status_code, detail)
    return response


def settings_params(task: str, settings: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"task": task}
    for k, v in settings.items():
        if v is None:
            continue
        params[k] = str(v).lower() if isinstance(v, bool) else v
    return params


def file_content_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "text/csv"
    if suffix in (".jsonl", ".ndjson"):
        return "application/x-ndjson"
    raise ValueError(f"{path}: use a .jsonl, .ndjson or .csv file")


def results_format(path: str | Path, format: str | None) -> str:
    """The export format for a results file: ``format``, else the one its suffix names.

    Raises:
        ValueError: an unknown format, a suffix that names none (without ``format``),
            or a ``format`` other than the one the suffix names.
    """
    suffix = Path(path).suffix.lower()
    implied = FORMAT_OF_SUFFIX.get(suffix)
    if format is None:
        if implied is None:
            raise ValueError(
                f"cannot tell the results format from {str(path)!r}: name the file "
                f"{', '.join(sorted(FORMAT_OF_SUFFIX))} or give the format "
                f"({', '.join(RESULT_FORMATS)})"
            )
        return implied
    fmt = format.lower()
    if fmt not in RESULT_FORMATS:
        raise ValueError(f"unknown results format {format!r}; use one of "
                         f"{', '.join(RESULT_FORMATS)}")
    if implied is not None and implied != fmt:
        raise ValueError(f"format {fmt!r} does not match the file name {str(path)!r} "
                         f"({suffix} is {implied})")
    return fmt


def partial_path(path: Path) -> Path:
    """Where a download is written until it is complete (then renamed to ``path``)."""
    return path.with_name(f".{path.name}.part")


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(UPLOAD_CHUNK):
            yield chunk


def ndjson_chunks(items: Iterable[Any]) -> Iterator[bytes]:
    buf = bytearray()
    for item in items:
        buf += orjson.dumps(item)
        buf += b"\n"
        if len(buf) >= UPLOAD_CHUNK:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def parse_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield orjson.loads(line)


def upload(task: str, settings: dict[str, Any], *, file: str | Path | None,
           items: Iterable[Any] | None, idempotency_key: str | None
           ) -> tuple[dict[str, Any], dict[str, str], Iterator[bytes]]:
    """Query parameters, headers and body chunks of a streamed batch upload."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    params = settings_params(task, settings)
    if file is not None:
        path = Path(file)
        headers["Content-Type"] = file_content_type(path)
        return params, headers, file_chunks(path)
    headers["Content-Type"] = "application/x-ndjson"
    return params, headers, ndjson_chunks(items or [])
