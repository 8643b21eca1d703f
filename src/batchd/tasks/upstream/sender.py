"""The HTTP side of upstream requests: one aiohttp session per process (and event loop),
its connections kept alive between requests.

aiohttp here, httpx everywhere else: the upstream path is the one place where the HTTP
client's own CPU bounds what batchd can do. Measured with ``bench/openai_batch.py``'s
stand-in (20 ms answers, 128 in flight, one process on this 2-core machine), httpx's
transport took 520–960 µs of CPU a request (anyio cancel scopes around every read and
write, a scan of the pool per request, headers and body in two writes) against 180 µs for
aiohttp, which alone put the target of 2,000 requests a second out of reach.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import yarl

# An idle connection is dropped before the upstream would drop it (uvicorn, which vLLM
# and SGLang serve with, closes after 5 s): a request never goes out on a closing socket.
KEEPALIVE_S = 4.0


@dataclass(frozen=True, slots=True)
class Reply:
    """An upstream's answer, read whole."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class Unreachable(Exception):
    """No answer: a timeout, a refused or lost connection (worth trying again)."""


class Sender:
    """POSTs to upstreams over kept-alive connections; how many at once is the gates'
    business (:mod:`batchd.tasks.upstream.gate`), so the pool itself is unbounded."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, yarl.URL] = {}

    def _session_now(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S,
                                             ttl_dns_cache=300)
            # No cookie jar: nothing an upstream sets goes back to it with other requests.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",), raise_for_status=False)
            self._loop = loop
        return self._session

    def _url(self, text: str) -> yarl.URL:
        found = self._urls.get(text)
        if found is None:
            if len(self._urls) >= 1000:
                self._urls.clear()
            found = self._urls[text] = yarl.URL(text)
        return found

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(seconds)
        if found is None:
            found = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return found

    async def post(self, url: str, body: bytes, *, headers: Mapping[str, str],
                   timeout_s: float) -> Reply:
        """The answer to ``body`` POSTed to ``url``; raises :class:`Unreachable`."""
        session = self._session_now()
        try:
            async with session.post(self._url(url), data=body, headers=headers,
                                    timeout=self._timeout(timeout_s)) as response:
                return Reply(response.status, response.headers, await response.read())
        except TimeoutError:
            raise Unreachable(f"timed out after {timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
