"""A local HTTP server speaking Anthropic's Message Batches and OpenAI's Batch API.

Request and response bodies are built and checked with the official SDKs' own types
(``anthropic.types.messages``, ``openai.types``), so the real SDK clients pointed at it
(``base_url``) go through their whole request and parsing path. Each request gets a
deterministic answer: a JSON text naming its ``custom_id``, with tokens counted as
4 characters a token. A user message containing ``please-fail`` gets an error.

A batch reports ``in_progress`` for its first ``polls_before_end`` retrieves, then ends.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import uvicorn
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from anthropic.types.messages.batch_create_params import Request as AnthropicRequest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from openai.types import Batch, FileObject
from openai.types.chat import ChatCompletion
from pydantic import TypeAdapter

from tests.conftest import local_socket

FAIL_MARK = "please-fail"
ANTHROPIC_REQUEST = TypeAdapter(AnthropicRequest)


def count_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def answer(custom_id: str, system: str, user: str) -> tuple[str, int, int]:
    text = orjson.dumps({"custom_id": custom_id, "chars": len(user)}).decode()
    return text, count_tokens(system + user), count_tokens(text)


@dataclass
class FakeBatch:
    id: str
    kind: str  # anthropic | openai
    requests: list[dict[str, Any]]
    created: float = field(default_factory=time.time)
    retrieves: int = 0
    cancelled: bool = False
    ended_at: float | None = None
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None


class FakeProviders:
    """The fake server; ``url`` is its base (Anthropic: ``url``; OpenAI: ``url + "/v1"``)."""

    def __init__(self, *, polls_before_end: int = 1) -> None:
        self.polls_before_end = polls_before_end
        self.batches: dict[str, FakeBatch] = {}
        self.files: dict[str, bytes] = {}
        self.usage: dict[str, tuple[int, int]] = {}  # custom_id → (input, output) tokens
        self.calls: list[str] = []
        self.refuse_next = False
        self._ids = itertools.count(1)
        self._sock = local_socket()
        self.port = int(self._sock.getsockname()[1])
        self.app = self._build()
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProviders:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake provider server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _advance(self, b: FakeBatch) -> bool:
        """Count a retrieve; True once the batch has ended."""
        b.retrieves += 1
        if b.ended_at is None and (b.cancelled or b.retrieves > self.polls_before_end):
            b.ended_at = time.time()
        return b.ended_at is not None

    # Anthropic
    def _anthropic_batch(self, b: FakeBatch) -> dict[str, Any]:
        ended = b.ended_at is not None
        n = len(b.requests)
        status = "ended" if ended else ("canceling" if b.cancelled else "in_progress")
        counts = {"processing": 0 if ended else n, "succeeded": 0, "errored": 0,
                  "canceled": 0, "expired": 0}
        if ended:
            for line in self._anthropic_results(b):
                counts[line["result"]["type"]] += 1
        created = datetime.fromtimestamp(b.created, UTC)
        return MessageBatch.model_validate({
            "id": b.id, "type": "message_batch", "processing_status": status,
            "request_counts": counts, "created_at": created.isoformat(),
            "expires_at": (created + timedelta(hours=24)).isoformat(),
            "ended_at": datetime.fromtimestamp(b.ended_at, UTC).isoformat() if ended else None,
            "cancel_initiated_at": created.isoformat() if b.cancelled else None,
            "results_url": f"{self.url}/v1/messages/batches/{b.id}/results" if ended else None,
            "archived_at": None,
        }).model_dump(mode="json")

    def _anthropic_results(self, b: FakeBatch) -> list[dict[str, Any]]:
        lines = []
        for r in b.requests:
            params = r["params"]
            user = " ".join(m["content"] for m in params["messages"] if m["role"] == "user")
            if b.cancelled:
                result: dict[str, Any] = {"type": "canceled"}
            elif FAIL_MARK in user:
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "the fake refuses this one"}}}
            else:
                text, tin, tout = answer(r["custom_id"], params.get("system", ""), user)
                self.usage[r["custom_id"]] = (tin, tout)
                result = {"type": "succeeded", "message": {
                    "id": f"msg_{r['custom_id']}", "type": "message", "role": "assistant",
                    "model": params["model"], "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": tin, "output_tokens": tout},
                }}
            line = {"custom_id": r["custom_id"], "result": result}
            lines.append(MessageBatchIndividualResponse.model_validate(line).model_dump(
                mode="json", exclude_none=True))
        return lines

    # OpenAI
    def _openai_batch(self, b: FakeBatch) -> dict[str, Any]:
        ended = b.ended_at is not None
        if ended and b.output_file_id is None and not b.cancelled:
            self._openai_outputs(b)
        status = ("cancelled" if b.cancelled else "completed") if ended else (
            "cancelling" if b.cancelled else "in_progress")
        done = int(b.ended_at) if ended else None
        failed = sum(1 for r in b.requests if FAIL_MARK in orjson.dumps(r["body"]).decode())
        return Batch.model_validate({
            "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions",
            "input_file_id": b.input_file_id, "completion_window": "24h", "status": status,
            "created_at": int(b.created), "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id,
            "completed_at": done if ended and not b.cancelled else None,
            "cancelled_at": done if ended and b.cancelled else None,
            "request_counts": {"total": len(b.requests),
                               "completed": len(b.requests) - failed if ended else 0,
                               "failed": failed if ended else 0},
        }).model_dump(mode="json", exclude_none=True)

    def _openai_outputs(self, b: FakeBatch) -> None:
        out, err = [], []
        for r in b.requests:
            body = r["body"]
            system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
            user = " ".join(m["content"] for m in body["messages"] if m["role"] == "user")
            if FAIL_MARK in user:
                err.append({"id": f"batch_req_{r['custom_id']}", "custom_id": r["custom_id"],
                            "response": {"status_code": 400, "request_id": "req_x", "body": {
                                "error": {"message": "the fake refuses this one",
                                          "type": "invalid_request_error", "code": None}}},
                            "error": None})
                continue
            text, tin, tout = answer(r["custom_id"], system, user)
            self.usage[r["custom_id"]] = (tin, tout)
            completion = ChatCompletion.model_validate({
                "id": f"chatcmpl-{r['custom_id']}", "object": "chat.completion",
                "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": tin, "completion_tokens": tout,
                          "total_tokens": tin + tout},
            }).model_dump(mode="json", exclude_none=True)
            out.append({"id": f"batch_req_{r['custom_id']}", "custom_id": r["custom_id"],
                        "response": {"status_code": 200, "request_id": "req_x",
                                     "body": completion}, "error": None})
        b.output_file_id = self._store_file(out)
        b.error_file_id = self._store_file(err) if err else None

    def _store_file(self, lines: list[dict[str, Any]]) -> str:
        file_id = self._new_id("file-")
        self.files[file_id] = b"".join(orjson.dumps(x) + b"\n" for x in lines)
        return file_id

    def _build(self) -> FastAPI:  # noqa: C901 - one route table
        app = FastAPI()

        def check_key(request: Request, header: str) -> None:
            # SDK versions differ: Anthropic's older ones send x-api-key, newer a Bearer.
            value = request.headers.get(header, "")
            bearer = request.headers.get("authorization", "")
            if not value and not bearer.startswith("Bearer "):
                raise HTTPException(401, "missing API key")

        def json(body: Any) -> Response:
            return Response(orjson.dumps(body), media_type="application/json")

        def refused() -> Response | None:
            if self.refuse_next:
                self.refuse_next = False
                return Response(orjson.dumps({"type": "error", "error": {
                    "type": "overloaded_error", "message": "try later"}}), status_code=400,
                    media_type="application/json")
            return None

        @app.post("/v1/messages/batches")
        async def a_create(request: Request) -> Response:
            check_key(request, "x-api-key")
            assert request.headers.get("anthropic-version"), "the SDK sends anthropic-version"
            self.calls.append("anthropic.create")
            if (r := refused()) is not None:
                return r
            requests = (await request.json())["requests"]
            for req in requests:
                checked = ANTHROPIC_REQUEST.validate_python(req)
                list(checked["params"]["messages"])  # validate every message
            b = FakeBatch(id=self._new_id("msgbatch_"), kind="anthropic", requests=requests)
            self.batches[b.id] = b
            return json(self._anthropic_batch(b))

        @app.get("/v1/messages/batches/{batch_id}")
        async def a_get(batch_id: str, request: Request) -> Response:
            check_key(request, "x-api-key")
            self.calls.append("anthropic.retrieve")
            b = self.batches.get(batch_id) or _missing()
            self._advance(b)
            return json(self._anthropic_batch(b))

        @app.get("/v1/messages/batches/{batch_id}/results")
        async def a_results(batch_id: str, request: Request) -> Response:
            check_key(request, "x-api-key")
            self.calls.append("anthropic.results")
            b = self.batches.get(batch_id) or _missing()
            body = b"".join(orjson.dumps(x) + b"\n" for x in self._anthropic_results(b))
            return Response(body, media_type="application/binary")

        @app.post("/v1/messages/batches/{batch_id}/cancel")
        async def a_cancel(batch_id: str, request: Request) -> Response:
            check_key(request, "x-api-key")
            self.calls.append("anthropic.cancel")
            b = self.batches.get(batch_id) or _missing()
            b.cancelled = True
            return json(self._anthropic_batch(b))

        @app.post("/v1/files")
        async def o_upload(request: Request) -> Response:
            check_key(request, "authorization")
            self.calls.append("openai.files.create")
            fields = _multipart(request.headers["content-type"], await request.body())
            assert fields["purpose"][0] == b"batch", fields["purpose"]
            data = fields["file"][0]
            for raw in data.splitlines():
                line = orjson.loads(raw)
                assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
                assert line["body"]["model"] and line["body"]["messages"]
            file_id = self._new_id("file-")
            self.files[file_id] = data
            return json(FileObject.model_validate({
                "id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": fields["file"][1] or "upload.jsonl", "purpose": "batch",
                "status": "processed",
            }).model_dump(mode="json", exclude_none=True))

        @app.post("/v1/batches")
        async def o_create(request: Request) -> Response:
            check_key(request, "authorization")
            self.calls.append("openai.batches.create")
            if (r := refused()) is not None:
                return r
            body = await request.json()
            assert body["endpoint"] == "/v1/chat/completions"
            assert body["completion_window"] == "24h"
            data = self.files.get(body["input_file_id"]) or _missing()
            requests = [orjson.loads(x) for x in data.splitlines()]
            b = FakeBatch(id=self._new_id("batch_"), kind="openai", requests=requests,
                          input_file_id=body["input_file_id"])
            self.batches[b.id] = b
            return json(self._openai_batch(b))

        @app.get("/v1/batches/{batch_id}")
        async def o_get(batch_id: str, request: Request) -> Response:
            check_key(request, "authorization")
            self.calls.append("openai.batches.retrieve")
            b = self.batches.get(batch_id) or _missing()
            self._advance(b)
            return json(self._openai_batch(b))

        @app.post("/v1/batches/{batch_id}/cancel")
        async def o_cancel(batch_id: str, request: Request) -> Response:
            check_key(request, "authorization")
            self.calls.append("openai.batches.cancel")
            b = self.batches.get(batch_id) or _missing()
            b.cancelled = True
            return json(self._openai_batch(b))

        @app.get("/v1/files/{file_id}/content")
        async def o_content(file_id: str, request: Request) -> Response:
            check_key(request, "authorization")
            self.calls.append("openai.files.content")
            data = self.files.get(file_id)
            if data is None:
                _missing()
            return Response(data, media_type="application/octet-stream")

        return app


def _missing() -> Any:
    raise HTTPException(404, "not found")


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """``{field: (value, filename)}`` of a multipart/form-data body."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (payload if isinstance(payload, bytes) else b"", part.get_filename())
    return fields
