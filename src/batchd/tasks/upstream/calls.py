"""Sending one request to its upstream: route, gate, HTTP, answer (see the package)."""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import Any

import httpx
import orjson

from batchd.domain import upstreams
from batchd.domain.models import new_id
from batchd.settings import Settings
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.kinds import llm, runtime
from batchd.tasks.kinds.base import retryable_status
from batchd.tasks.upstream import translate
from batchd.tasks.upstream.gate import Gate, MemoryShares, TooLarge

ANTHROPIC_VERSION = "2023-06-01"
MESSAGES = "/v1/messages"
PROCESS_ID = new_id("prc")  # this process, in upstream_shares


class UpstreamError(RecordError):
    """A request that failed for good, with the answer to report (``status_code``, ``body``)."""

    def __init__(self, message: str, *, code: str, status_code: int,
                 body: dict[str, Any] | None = None, request_id: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id or f"req_{secrets.token_hex(12)}"

    def as_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"code": self.code, "message": self.message, "status_code": self.status_code,
                "request_id": self.request_id, "body": self.body}


def invalid_request(message: str, *, code: str, param: str | None = None,
                    status_code: int = 400) -> UpstreamError:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}
    return UpstreamError(message, code=code, status_code=status_code, body=body)


def settings() -> Settings:
    return runtime.settings()


@functools.lru_cache(maxsize=4)
def _routes(raw: bytes) -> upstreams.Routes:
    return upstreams.Routes(upstreams.parse(orjson.loads(raw)))


def routes() -> upstreams.Routes:
    return _routes(orjson.dumps(settings().upstreams))


def upstream_model(model: str) -> str:
    """The model's name on its upstream (prices are by it); ``model`` if none serves it."""
    found = routes().route(model)
    return found.model if found else model


def estimate_tokens(record: Any) -> tuple[int, int]:
    """(prompt, answer) tokens a record may use, for budgets and the tokens-per-minute gate."""
    body = record.get("body") if isinstance(record, dict) else None
    if not isinstance(body, dict):
        return 0, 0
    prompt = llm.prompt_tokens(orjson.dumps(body).decode())
    if str(record.get("url", "")).endswith("/embeddings"):
        return prompt, 0
    answer = body.get("max_completion_tokens") or body.get("max_tokens")
    return prompt, answer if isinstance(answer, int) and answer > 0 else llm.DEFAULT_ANSWER_TOKENS


# httpx's pool looks at every connection it holds for each request: many small pools,
# taken in turn, keep that cheap with hundreds of requests in flight. Requests go to the
# transports directly: the client's layers (redirects, auth, cookies) are not needed.
POOLS = 16
POOL_CONNECTIONS = 24


class _Process:
    """This process's gates and HTTP clients (made on first use, on the worker's loop)."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.transports: list[httpx.AsyncHTTPTransport] = []
        self.turn = 0
        self.memory = MemoryShares()
        self.urls: dict[str, httpx.URL] = {}

    def gate(self, up: upstreams.UpstreamSpec) -> Gate:
        gate = self.gates.get(up.name)
        if gate is None or gate.limits != up.limits:
            s = settings()
            gate = self.gates[up.name] = Gate(
                up.name, up.limits, store=runtime.store() or self.memory, process_id=PROCESS_ID,
                renew_s=s.upstream_share_interval_s, lease_s=s.upstream_share_lease_s)
        return gate

    def http(self) -> httpx.AsyncHTTPTransport:
        if not self.transports:
            limits = httpx.Limits(max_connections=POOL_CONNECTIONS,
                                  max_keepalive_connections=POOL_CONNECTIONS)
            self.transports = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(POOLS)]
        self.turn = (self.turn + 1) % POOLS
        return self.transports[self.turn]

    def url(self, text: str) -> httpx.URL:
        found = self.urls.get(text)
        if found is None:
            if len(self.urls) > 1000:
                self.urls.clear()
            found = self.urls[text] = httpx.URL(text)
        return found


_process = _Process()


def gate_of(upstream: str) -> Gate | None:
    """This process's gate of ``upstream`` (None before its first request)."""
    return _process.gates.get(upstream)


async def handle(record: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    url, body = record["url"], record["body"]
    model = body.get("model") if isinstance(body, dict) else None
    route = routes().route(model) if isinstance(model, str) else None
    if route is None:
        raise invalid_request(f"The model `{model}` does not exist or is not served here.",
                              code="model_not_found", param="model", status_code=404)
    up = route.upstream
    path, sent = _outgoing(url, body, route)
    tokens_in, tokens_out = estimate_tokens(record)
    gate = _process.gate(up)
    try:
        ticket = await gate.acquire(tokens_in + tokens_out)
    except TooLarge as exc:
        raise invalid_request(str(exc), code="request_too_large") from None
    sending = asyncio.ensure_future(_post(up, path, sent))
    try:
        response = await asyncio.shield(sending)
    except asyncio.CancelledError:
        # The upstream still works on it: its slot is free only once it has answered.
        sending.add_done_callback(lambda _: gate.release(ticket))
        raise
    except BaseException:
        gate.release(ticket)
        raise
    data = _json(response)
    gate.release(ticket, tokens=_usage_total(data))
    return _answer(response, data, record, route, gate, ctx)


def _outgoing(url: str, body: dict[str, Any], route: upstreams.Route
              ) -> tuple[str, dict[str, Any]]:
    """The path on the upstream and the body to send it."""
    if url == MESSAGES and route.upstream.style == "openai":
        try:
            return "/chat/completions", translate.chat_request(body, route.model)
        except translate.Untranslatable as exc:
            raise invalid_request(str(exc), code="untranslatable") from None
    if url != MESSAGES and route.upstream.style == "anthropic":
        raise invalid_request(f"{url} requests cannot go to an Anthropic-style upstream "
                              f"({route.upstream.name}); only /v1/messages can",
                              code="unsupported_endpoint")
    path = "/v1/messages" if route.upstream.style == "anthropic" else url.removeprefix("/v1")
    return path, {**body, "model": route.model}


async def _post(up: upstreams.UpstreamSpec, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if up.style == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if up.api_key:
            headers["x-api-key"] = up.api_key
    elif up.api_key:
        headers["Authorization"] = f"Bearer {up.api_key}"
    t = up.timeout_s
    request = httpx.Request("POST", _process.url(up.base_url + path), headers=headers,
                            content=orjson.dumps(body),
                            extensions={"timeout": {"connect": t, "read": t, "write": t,
                                                    "pool": t}})
    try:
        response = await _process.http().handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response
    except httpx.TimeoutException:
        raise RuntimeError(f"upstream {up.name} timed out after {up.timeout_s} s") from None
    except httpx.TransportError as exc:  # the engine retries with backoff
        raise RuntimeError(f"upstream {up.name}: {type(exc).__name__}: {exc}") from None


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _usage_total(data: Any) -> int | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    found = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "input_tokens",
                                    "output_tokens")]
    return sum(v for v in found if isinstance(v, int)) or None


def _retry_after(response: httpx.Response) -> float:
    raw = response.headers.get("retry-after", "")
    try:
        return min(max(float(raw), 0.0), 600.0)
    except ValueError:
        return 1.0


def _answer(response: httpx.Response, data: Any, record: dict[str, Any],
            route: upstreams.Route, gate: Gate, ctx: TaskContext) -> dict[str, Any]:
    status = response.status_code
    name = route.upstream.name
    if status == 429:
        gate.pause(_retry_after(response))
        raise RuntimeError(f"HTTP 429 from upstream {name} (Retry-After honoured)")
    if retryable_status(status):
        raise RuntimeError(f"HTTP {status} from upstream {name}")
    request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
    if status >= 300 or not isinstance(data, dict):
        message = f"HTTP {status} from upstream {name}: {response.text[:500]}"
        raise UpstreamError(message, code="upstream_error", status_code=status if status >= 300
                            else 502, body=data if isinstance(data, dict) else None,
                            request_id=request_id)
    if record["url"] == MESSAGES and route.upstream.style == "openai":
        try:
            data = translate.message_answer(
                data, model=record["body"]["model"],
                stop_sequences=record["body"].get("stop_sequences"))
        except translate.Untranslatable as exc:
            raise invalid_request(str(exc), code="untranslatable", status_code=502) from None
    _report(data, route, ctx)
    return {"status_code": status, "request_id": request_id or f"req_{secrets.token_hex(12)}",
            "body": data}


def _report(data: dict[str, Any], route: upstreams.Route, ctx: TaskContext) -> None:
    found = data.get("usage")
    usage: dict[str, Any] = found if isinstance(found, dict) else {}
    tokens_in = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
    tokens_out = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
    ctx.report_usage(tokens_in=tokens_in, tokens_out=tokens_out,
                     cost_usd=llm.cost_usd(settings().llm_prices, route.model, tokens_in,
                                           tokens_out))


async def aclose() -> None:
    """Close the HTTP connections (tests, shutdown)."""
    transports, _process.transports = _process.transports, []
    for transport in transports:
        await asyncio.shield(transport.aclose())
