"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from batchd.client import base


class Client:
    """Talks to a batchd server's native API.

    Args:
        url: server address (``BATCHD_URL``, else ``http://127.0.0.1:8080``).
        api_key: key (``BATCHD_API_KEY``).
        timeout: seconds per request.
        transport: an httpx transport (e.g. ``httpx.MockTransport`` in tests).

    Errors: :class:`BatchdHTTPError` when the server refuses (its ``status_code`` and
    ``detail``), :class:`BatchdConnectionError` when no server answers at ``url``.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 300.0, transport: httpx.BaseTransport | None = None) -> None:
        base_url, headers = base.config(url, api_key)
        self.url = base_url
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        with base.reaching(self.url):
            return base.check(self._http.request(method, path, **kw)).json()

    def _call(self, call: base.Call) -> Any:
        return self._json(call.method, call.path, params=call.params, json=call.json,
                          headers=call.headers)

    def submit(self, task: str, items: Iterable[Any] | None = None, *,
               file: str | Path | None = None, idempotency_key: str | None = None,
               **settings: Any) -> dict[str, Any]:
        """Create a batch from ``items`` or a .jsonl/.csv ``file``, streamed; returns the batch.

        ``settings`` are the batch fields (``records_per_item``, ``priority``, ``parallelism``,
        ``fail_fast``, ``budget_usd``, ``webhook_url``, …).
        """
        params, headers, chunks = base.upload(task, settings, file=file, items=items,
                                              idempotency_key=idempotency_key)
        return self._json("POST", "/api/batches", params=params, headers=headers, content=chunks)

    def add_items(self, batch_id: str, items: Iterable[Any]) -> dict[str, Any]:
        """Append ``items`` (streamed as NDJSON) to an open batch; returns the batch."""
        return self._json("POST", f"/api/batches/{batch_id}/items",
                          headers={"Content-Type": "application/x-ndjson"},
                          content=base.ndjson_chunks(items))

    def close_batch(self, batch_id: str) -> dict[str, Any]:
        """No more items: the batch finishes once what it holds has run."""
        return self._json("POST", f"/api/batches/{batch_id}/close")

    def get(self, batch_id: str) -> dict[str, Any]:
        """The batch: ``status``, ``display_status``, ``counts``, ``records``, ``cost``, …"""
        return self._json("GET", f"/api/batches/{batch_id}")

    def list_batches(self, status: str | None = None, limit: int = 50, *,
                     task: str | None = None, cursor: str | None = None) -> base.Page:
        """A page of the batches the key may see, newest first (``.next_cursor`` for more)."""
        return base.page(self._call(base.list_batches(status, task, limit, cursor)))

    def iter_batches(self, status: str | None = None, *, task: str | None = None,
                     page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every matching batch, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            found = self.list_batches(status, page_size, task=task, cursor=cursor)
            yield from found
            if found.next_cursor is None:
                return
            cursor = found.next_cursor

    def list_items(self, batch_id: str, status: str | None = None, limit: int = 100, *,
                   cursor: str | None = None) -> base.Page:
        """A page of a batch's items in order: ``{id, seq, status, attempts, records, input,
        output, error, usage, …}`` (``.next_cursor`` for more)."""
        return base.page(self._call(base.list_items(batch_id, status, limit, cursor)))

    def iter_items(self, batch_id: str, status: str | None = None, *,
                   page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every item of the batch (of ``status``), in order, a page at a time."""
        cursor: str | None = None
        while True:
            found = self.list_items(batch_id, status, page_size, cursor=cursor)
            yield from found
            if found.next_cursor is None:
                return
            cursor = found.next_cursor

    def get_item(self, batch_id: str, item_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/batches/{batch_id}/items/{item_id}")

    def webhooks(self, batch_id: str | None = None, status: str | None = None,
                 limit: int = 100, *, cursor: str | None = None) -> base.Page:
        """A page of the webhook delivery log, newest first (``.next_cursor`` for more)."""
        return base.page(self._call(base.list_webhooks(batch_id, status, limit, cursor)))

    def get_webhook(self, message_id: str) -> dict[str, Any]:
        """A webhook message with its ``attempts_log``."""
        return self._json("GET", f"/api/webhooks/{message_id}")

    def tasks(self) -> list[dict[str, Any]]:
        return self._json("GET", "/api/tasks")["data"]  # type: ignore[no-any-return]

    def cancel(self, batch_id: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel: queued items at once, running ones cooperatively; returns the batch."""
        return self._json("POST", f"/api/batches/{batch_id}/cancel", json={"reason": reason})

    def retry(self, batch_id: str, status: str | Iterable[str] | None = None, *,
              error: str | None = None, error_code: str | None = None) -> dict[str, Any]:
        """Run the batch's failed or cancelled items (``status``: either or both; default
        both) whose error contains ``error`` or has code ``error_code`` again, with fresh
        attempts; a finished batch reopens. Returns ``{action, touched, batch}``
        (``touched``: how many were queued again)."""
        return self._call(base.retry(batch_id, status, error, error_code))

    def pause(self, batch_id: str) -> dict[str, Any]:
        """Hand out none of the batch's items until resumed (running ones finish); returns
        ``{action, touched, batch}`` (``touched``: the queued items held back)."""
        return self._call(base.action(batch_id, "pause"))

    def resume(self, batch_id: str) -> dict[str, Any]:
        """Hand out a paused batch's items again; ``{action, touched, batch}``."""
        return self._call(base.action(batch_id, "resume"))

    def wait(self, batch_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the batch is terminal; ``on_progress`` gets every snapshot.

        Raises:
            TimeoutError: still not finished after ``timeout_s`` (it keeps running).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            batch = self.get(batch_id)
            if on_progress is not None:
                on_progress(batch)
            if batch["status"] in base.TERMINAL:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {batch['status']}")
            time.sleep(poll_s)

    def iter_results(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """Every finished record, streamed (``{item_id, seq, status, input, output, error}``)."""
        with base.reaching(self.url), self._http.stream(
            "GET", f"/api/batches/{batch_id}/results", params={"format": "jsonl"}
        ) as r:
            if r.status_code >= 400:
                r.read()
            base.check(r)
            yield from base.parse_lines(r.iter_lines())

    def download_results(self, batch_id: str, path: str | Path, *,
                         format: str | None = None) -> int:
        """Write the results export to ``path``; returns the bytes written.

        ``format`` is ``jsonl``, ``json``, ``csv`` or ``parquet`` (the server needs the
        ``parquet`` extra); by default the file's suffix names it (``.jsonl``/``.ndjson``,
        ``.json``, ``.csv``, ``.parquet``/``.pq``). The file appears only once complete.
        A batch still running gives the records finished so far.

        Raises:
            ValueError: no format and a suffix that names none, or a format the suffix
                contradicts (before any request).
            BatchdHTTPError: the server refused (unknown batch, format unavailable, …).
        """
        target = Path(path)
        fmt = base.results_format(target, format)
        part = base.partial_path(target)
        n = 0
        with base.reaching(self.url), self._http.stream(
            "GET", f"/api/batches/{batch_id}/results", params={"format": fmt}
        ) as r:
            if r.status_code >= 400:
                r.read()
            base.check(r)
            try:
                with part.open("wb") as f:
                    for chunk in r.iter_bytes():
                        n += f.write(chunk)
                part.replace(target)
            finally:
                part.unlink(missing_ok=True)
        return n

    def create_key(self, tenant: str, *, role: str = "user", tier: str | None = None,
                   owner: str | None = None,
                   limits: dict[str, float] | None = None) -> dict[str, Any]:
        """A new API key (the key itself is in ``key``, shown this once)."""
        body = {"tenant": tenant, "role": role, "tier": tier, "owner": owner, "limits": limits}
        return self._json("POST", "/api/keys", json={k: v for k, v in body.items() if v})
