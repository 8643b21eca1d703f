"""A stand-in model server, run in its own process: OpenAI-compatible
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and Anthropic's
``/v1/messages``, with faults on demand, and what it saw (peak concurrency, peak request
rate, retries after a 429) at ``GET /_stats``.

Answers are deterministic: a chat completion says ``answer to: <last message>``, a
completion ``answer to: <prompt>``, an embedding is the text's length and first bytes.

Faults (``POST /_control`` or the command line): ``latency_s``; ``fail_status`` (429 or
500) for the first ``fail_times`` attempts of each distinct request body, a 429 with
``Retry-After: retry_after_s``.

Run: ``python -m tests.support.model_server [--latency-s 0.02] ...``; it prints
``model server on http://127.0.0.1:<port>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import socket
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
import orjson
import uvloop


@dataclass
class Faults:
    latency_s: float = 0.0
    fail_status: int = 0
    fail_times: int = 1
    retry_after_s: float = 1.0
    rate_window_s: float = 1.0
    # Structured output (response_format json_schema): the first this many attempts of each
    # distinct request get an answer that does not conform to the schema (a JSON array).
    violate_schema_times: int = 0


@dataclass
class Stats:
    requests: int = 0
    in_flight: int = 0
    peak_concurrency: int = 0
    peak_rate: int = 0  # most arrivals in any rate_window_s
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    window: deque[float] = field(default_factory=deque)
    attempts: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))

    def arrive(self, now: float, window_s: float) -> None:
        self.requests += 1
        self.in_flight += 1
        self.peak_concurrency = max(self.peak_concurrency, self.in_flight)
        self.window.append(now)
        while self.window and self.window[0] <= now - window_s:
            self.window.popleft()
        self.peak_rate = max(self.peak_rate, len(self.window))

    def retry_gap_min(self) -> float | None:
        """The shortest wait between a 429 and the next attempt of the same request."""
        gaps = [b[0] - a[0] for tries in self.attempts.values()
                for a, b in zip(tries, tries[1:], strict=False) if a[1] == 429]
        return min(gaps) if gaps else None

    def public(self) -> dict[str, Any]:
        return {"requests": self.requests, "in_flight": self.in_flight,
                "peak_concurrency": self.peak_concurrency, "peak_rate": self.peak_rate,
                "by_status": dict(self.by_status), "retry_gap_min_s": self.retry_gap_min(),
                "distinct_requests": len(self.attempts)}


class ModelServer:
    """The ASGI app."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.stats = Stats()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path, method = scope["path"], scope["method"]
        if path == "/_stats":
            await _send(send, 200, self.stats.public())
        elif path == "/_control" and method == "POST":
            for k, v in orjson.loads(body or b"{}").items():
                setattr(self.faults, k, v)
            await _send(send, 200, vars(self.faults))
        elif path == "/_reset" and method == "POST":
            self.stats = Stats()
            await _send(send, 200, {})
        elif method == "POST" and path in ANSWERS:
            await self._model(path, body, send)
        else:
            await _send(send, 404, {"error": {"message": f"no route {path}", "type": "x"}})

    async def _model(self, path: str, body: bytes, send: Any) -> None:
        f, stats = self.faults, self.stats
        now = time.monotonic()
        stats.arrive(now, f.rate_window_s)
        key = hashlib.sha1(body).hexdigest()
        tries = stats.attempts[key]
        try:
            if f.latency_s:
                await asyncio.sleep(f.latency_s)
            if f.fail_status and len(tries) < f.fail_times:
                status, headers = f.fail_status, {}
                if status == 429:
                    headers["retry-after"] = str(f.retry_after_s)
                answer: Any = {"error": {"message": "injected", "type": "server_error"}}
            else:
                status, headers = 200, {"x-request-id": "req_" + key[:16]}
                answer = ANSWERS[path](orjson.loads(body))
                if f.violate_schema_times > len(tries) and b'"json_schema"' in body:
                    answer["choices"][0]["message"]["content"] = "[]"
                if answer is None:
                    status, answer = 400, {"error": {"message": "bad request",
                                                     "type": "invalid_request_error"}}
        finally:
            stats.in_flight -= 1
        tries.append((now, status))
        stats.by_status[str(status)] += 1
        await _send(send, status, answer, headers)


async def _send(send: Any, status: int, payload: Any, headers: dict[str, str] | None = None
                ) -> None:
    raw = orjson.dumps(payload)
    hs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": raw})


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


def chat(req: dict[str, Any]) -> dict[str, Any] | None:
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = _text(messages[-1].get("content", ""))
    answer = f"answer to: {last}"
    answer = structured(req.get("response_format"), last) or answer
    prompt = sum(_tokens(_text(m.get("content", ""))) for m in messages)
    return {"id": "chatcmpl-" + hashlib.sha1(last.encode()).hexdigest()[:12],
            "object": "chat.completion", "created": int(time.time()), "model": req.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": _tokens(answer),
                      "total_tokens": prompt + _tokens(answer)}}


def conforming(schema: Any, text: str) -> Any:
    """A value of JSON schema ``schema`` (the common keywords), made from ``text``."""
    if not isinstance(schema, dict):
        return text
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return conforming(schema[key][0], text)
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: conforming(v, f"{k} of {text}") for k, v in props.items()}
    if kind == "array":
        return [conforming(schema.get("items") or {"type": "string"}, text)]
    return {"string": text, "integer": len(text), "number": len(text) / 2,
            "boolean": True, "null": None}.get(kind, text)


def structured(response_format: Any, text: str) -> str | None:
    """The answer to a structured-output request: JSON conforming to its schema."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    return orjson.dumps(conforming(spec.get("schema") or {}, text)).decode()


def completion(req: dict[str, Any]) -> dict[str, Any] | None:
    prompt = req.get("prompt")
    if not isinstance(prompt, str):
        return None
    answer = f"answer to: {prompt}"
    return {"id": "cmpl-1", "object": "text_completion", "created": int(time.time()),
            "model": req.get("model"),
            "choices": [{"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(answer),
                      "total_tokens": _tokens(prompt) + _tokens(answer)}}


def embedding(req: dict[str, Any]) -> dict[str, Any] | None:
    text = req.get("input")
    if not isinstance(text, str):
        return None
    vector = [float(len(text))] + [b / 255 for b in text.encode()[:7]]
    return {"object": "list", "model": req.get("model"),
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "usage": {"prompt_tokens": _tokens(text), "total_tokens": _tokens(text)}}


def message(req: dict[str, Any]) -> dict[str, Any] | None:
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    answer = f"answer to: {_text(messages[-1].get('content', ''))}"
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": req.get("model"),
            "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": _tokens(answer)}}


ANSWERS = {"/v1/chat/completions": chat, "/v1/completions": completion,
           "/v1/embeddings": embedding, "/v1/messages": message}


class StandIn:
    """A stand-in model server in a subprocess (for tests and benches)."""

    def __init__(self, *, log_path: str, **faults: Any) -> None:
        import subprocess
        from pathlib import Path

        args = [sys.executable, "-m", "tests.support.model_server"]
        for k, v in faults.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        root = Path(__file__).resolve().parents[2]
        self.log = open(log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log,
                                     cwd=str(root))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if "model server on" not in line:
            raise RuntimeError(f"the stand-in did not start: {line!r}")
        self.url = line.split(" on ", 1)[1].strip()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stats(self) -> dict[str, Any]:
        import httpx

        return httpx.get(self.url + "/_stats", timeout=10).json()  # type: ignore[no-any-return]

    def control(self, **faults: Any) -> None:
        import httpx

        httpx.post(self.url + "/_control", json=faults, timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


class HttpConnection(asyncio.Protocol):
    """HTTP/1.1 for an ASGI app, lean so that the stand-in costs the benchmarks that drive
    it little CPU (uvicorn took about twice as much a request): keep-alive, bodies of any
    framing (httptools parses them), answers in request order, each in one write."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.previous: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                     b"connection: close\r\n\r\n")
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self.url)
        scope = {"type": "http", "method": self.parser.get_method().decode(),
                 "path": url.path.decode(), "query_string": url.query or b"",
                 "headers": self.headers}
        self.previous = asyncio.get_running_loop().create_task(self._respond(
            scope, b"".join(self.body), self.parser.should_keep_alive(), self.previous))

    async def _respond(self, scope: dict[str, Any], body: bytes, keep_alive: bool,
                       previous: asyncio.Task[None] | None) -> None:
        start: dict[str, Any] = {"status": 500, "headers": []}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # said in the log, answered as a 500
            print(f"stand-in: {type(exc).__name__}: {exc}", file=sys.stderr)
            start, chunks = {"status": 500, "headers": []}, []
        if previous is not None:
            await previous
        if self.transport is None or self.transport.is_closing():
            return
        content = b"".join(chunks)
        status = start["status"]
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        head += [b"%s: %s\r\n" % (k, v) for k, v in start["headers"]
                 if k.lower() != b"content-length"]
        head.append(b"content-length: %d\r\n" % len(content))
        if not keep_alive:
            head.append(b"connection: close\r\n")
        self.transport.write(b"".join(head) + b"\r\n" + content)
        if not keep_alive:
            self.transport.close()


async def serve(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock``; says where once it listens."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpConnection(app), sock=sock, backlog=4096)
    host, port = sock.getsockname()[:2]
    print(f"model server on http://{host}:{port}", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--fail-status", type=int, default=0)
    parser.add_argument("--fail-times", type=int, default=1)
    parser.add_argument("--retry-after-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    faults = Faults(latency_s=args.latency_s, fail_status=args.fail_status,
                    fail_times=args.fail_times, retry_after_s=args.retry_after_s)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    uvloop.run(serve(ModelServer(faults), sock))


if __name__ == "__main__":
    main()
