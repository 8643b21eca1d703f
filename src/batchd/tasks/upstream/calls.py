"""Sending one request to its upstream: route, gate, HTTP, answer (see the package)."""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

from batchd.domain import pricing, upstreams
from batchd.domain.models import new_id
from batchd.settings import Settings
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.kinds import llm, runtime
from batchd.tasks.kinds.base import retryable_status
from batchd.tasks.upstream import translate
from batchd.tasks.upstream.gate import Gate, MemoryShares, TooLarge
from batchd.tasks.upstream.sender import Reply, Sender, Unreachable

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


D = TypeVar("D")


class _Derived(Generic[D]):
    """What ``make`` derives from a settings value, made again only when that value is
    replaced (settings are never changed in place): no work per request."""

    def __init__(self, make: Callable[[Any], D]) -> None:
        self._make = make
        self._seen: tuple[Any, D] | None = None

    def of(self, raw: Any) -> D:
        if self._seen is None or self._seen[0] is not raw:
            self._seen = (raw, self._make(raw))
        return self._seen[1]


_ROUTES = _Derived(lambda raw: _routes(orjson.dumps(raw)))
# Each model's price, looked up in BATCHD_LLM_PRICES on its first use.
_PRICES: _Derived[dict[str, pricing.Price | None]] = _Derived(lambda raw: {})


def routes() -> upstreams.Routes:
    return _ROUTES.of(settings().upstreams)


def cost_usd(model: str, tokens_in: int, tokens_out: int) -> float:
    """What the tokens cost at ``model``'s standard rate (``model``: its name on the
    upstream; BATCHD_LLM_PRICES), its price looked up once per model."""
    prices = settings().llm_prices
    known = _PRICES.of(prices)
    if model not in known:
        known[model] = llm.price_of(prices, model)
    price = known[model]
    return 0.0 if price is None else price.standard_usd(tokens_in, tokens_out)


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


class _Process:
    """This process's gates and HTTP session (made on first use, on the worker's loop)."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.memory = MemoryShares()
        self.sender = Sender()

    def gate(self, up: upstreams.UpstreamSpec) -> Gate:
        gate = self.gates.get(up.name)
        if gate is None or (gate.limits is not up.limits and gate.limits != up.limits):
            s = settings()
            gate = self.gates[up.name] = Gate(
                up.name, up.limits, store=runtime.store() or self.memory, process_id=PROCESS_ID,
                renew_s=s.upstream_share_interval_s, lease_s=s.upstream_share_lease_s)
        return gate


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


@functools.lru_cache(maxsize=64)
def _headers(style: str, api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if style == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key
    elif api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


async def _post(up: upstreams.UpstreamSpec, path: str, body: dict[str, Any]) -> Reply:
    try:
        return await _process.sender.post(up.base_url + path, orjson.dumps(body),
                                          headers=_headers(up.style, up.api_key),
                                          timeout_s=up.timeout_s)
    except Unreachable as exc:  # the engine retries with backoff
        raise RuntimeError(f"upstream {up.name}: {exc}") from None


def _json(response: Reply) -> Any:
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


def _retry_after(response: Reply) -> float:
    raw = response.headers.get("retry-after", "")
    try:
        return min(max(float(raw), 0.0), 600.0)
    except ValueError:
        return 1.0


def _answer(response: Reply, data: Any, record: dict[str, Any],
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
                     cost_usd=cost_usd(route.model, tokens_in, tokens_out))


async def aclose() -> None:
    """Close the HTTP connections (tests, shutdown)."""
    await asyncio.shield(_process.sender.aclose())
