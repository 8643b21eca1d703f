"""The asyncio client (same methods as :class:`batchd.Client`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from batchd.client import base


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class AsyncClient:
    """Talks to a batchd server's native API from asyncio code."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 300.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        base_url, headers = base.config(url, api_key)
        self.url = base_url
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout,
                                       transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        with base.reaching(self.url):
            return base.check(await self._http.request(method, path, **kw)).json()

    async def _call(self, call: base.Call) -> Any:
        return await self._json(call.method, call.path, params=call.params, json=call.json,
                                headers=call.headers)

    async def submit(self, task: str, items: Iterable[Any] | None = None, *,
                     file: str | Path | None = None, idempotency_key: str | None = None,
                     **settings: Any) -> dict[str, Any]:
        params, headers, chunks = base.upload(task, settings, file=file, items=items,
                                              idempotency_key=idempotency_key)
        return await self._json("POST", "/api/batches", params=params, headers=headers,
                                content=_aiter(chunks))

    async def add_items(self, batch_id: str, items: Iterable[Any]) -> dict[str, Any]:
        return await self._json("POST", f"/api/batches/{batch_id}/items",
                                headers={"Content-Type": "application/x-ndjson"},
                                content=_aiter(base.ndjson_chunks(items)))

    async def close_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/api/batches/{batch_id}/close")

    async def get(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/batches/{batch_id}")

    async def list_batches(self, status: str | None = None, limit: int = 50, *,
                           task: str | None = None, cursor: str | None = None) -> base.Page:
        return base.page(await self._call(base.list_batches(status, task, limit, cursor)))

    async def iter_batches(self, status: str | None = None, *, task: str | None = None,
                           page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            found = await self.list_batches(status, page_size, task=task, cursor=cursor)
            for row in found:
                yield row
            if found.next_cursor is None:
                return
            cursor = found.next_cursor

    async def list_items(self, batch_id: str, status: str | None = None, limit: int = 100, *,
                         cursor: str | None = None) -> base.Page:
        return base.page(await self._call(base.list_items(batch_id, status, limit, cursor)))

    async def iter_items(self, batch_id: str, status: str | None = None, *,
                         page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            found = await self.list_items(batch_id, status, page_size, cursor=cursor)
            for row in found:
                yield row
            if found.next_cursor is None:
                return
            cursor = found.next_cursor

    async def get_item(self, batch_id: str, item_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/batches/{batch_id}/items/{item_id}")

    async def webhooks(self, batch_id: str | None = None, status: str | None = None,
                       limit: int = 100, *, cursor: str | None = None) -> base.Page:
        return base.page(await self._call(base.list_webhooks(batch_id, status, limit, cursor)))

    async def get_webhook(self, message_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/api/webhooks/{message_id}")

    async def tasks(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self._json("GET", "/api/tasks"))["data"]
        return found

    async def cancel(self, batch_id: str, reason: str | None = None) -> dict[str, Any]:
        return await self._json("POST", f"/api/batches/{batch_id}/cancel", json={"reason": reason})

    async def retry(self, batch_id: str, status: str | Iterable[str] | None = None, *,
                    error: str | None = None, error_code: str | None = None) -> dict[str, Any]:
        """As :meth:`batchd.client.Client.retry`."""
        return await self._call(base.retry(batch_id, status, error, error_code))

    async def pause(self, batch_id: str) -> dict[str, Any]:
        """As :meth:`batchd.client.Client.pause`."""
        return await self._call(base.action(batch_id, "pause"))

    async def resume(self, batch_id: str) -> dict[str, Any]:
        """As :meth:`batchd.client.Client.resume`."""
        return await self._call(base.action(batch_id, "resume"))

    async def wait(self, batch_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None,
                   on_progress: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            batch = await self.get(batch_id)
            if on_progress is not None:
                result = on_progress(batch)
                if asyncio.iscoroutine(result):
                    await result
            if batch["status"] in base.TERMINAL:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {batch['status']}")
            await asyncio.sleep(poll_s)

    async def iter_results(self, batch_id: str) -> AsyncIterator[dict[str, Any]]:
        with base.reaching(self.url):
            async with self._http.stream("GET", f"/api/batches/{batch_id}/results",
                                         params={"format": "jsonl"}) as r:
                if r.status_code >= 400:
                    await r.aread()
                base.check(r)
                async for line in r.aiter_lines():
                    for row in base.parse_lines([line]):
                        yield row

    async def download_results(self, batch_id: str, path: str | Path, *,
                               format: str | None = None) -> int:
        """As :meth:`batchd.Client.download_results`: ``format`` from the suffix by default."""
        target = Path(path)
        fmt = base.results_format(target, format)
        part = base.partial_path(target)
        n = 0
        with base.reaching(self.url):
            async with self._http.stream("GET", f"/api/batches/{batch_id}/results",
                                         params={"format": fmt}) as r:
                if r.status_code >= 400:
                    await r.aread()
                base.check(r)
                try:
                    with part.open("wb") as f:
                        async for chunk in r.aiter_bytes():
                            n += f.write(chunk)
                    part.replace(target)
                finally:
                    part.unlink(missing_ok=True)
        return n

    async def create_key(self, tenant: str, *, role: str = "user", tier: str | None = None,
                         owner: str | None = None,
                         limits: dict[str, float] | None = None) -> dict[str, Any]:
        body = {"tenant": tenant, "role": role, "tier": tier, "owner": owner, "limits": limits}
        return await self._json("POST", "/api/keys",
                                json={k: v for k, v in body.items() if v})
