"""A local HTTP server speaking Anthropic's Message Batches and OpenAI's Batch API, strictly.

Request bodies are validated with the official SDKs' own parameter types
(``anthropic.types.messages.batch_create_params``, ``openai.types``) made strict: every
TypedDict forbids unknown fields and takes no type coercion (:func:`strict_type`).
Responses are built with the SDKs' response models, so the real SDK clients pointed at
the fake (``base_url``) go through their whole request and parsing path.

Whatever a provider would refuse — an unknown field, a wrong type, a missing or wrong
API key, a missing ``anthropic-version``, an unknown path or method, a duplicate
``custom_id`` — is appended to :attr:`FakeProviders.violations` and answered the way
that provider answers it (its error shape, a 4xx, ``x-should-retry: false``), so the
SDK never retries it into a pass. :func:`running` asserts at teardown that the list
is empty. A refusal a test asks for (:attr:`FakeProviders.refuse_next`) is not a
violation; it is recorded in :attr:`FakeProviders.refused`.

Each request gets a deterministic answer: a JSON text naming its ``custom_id``, with
tokens counted as 4 characters a token. A user message containing ``please-fail``
gets an error. A batch reports ``in_progress`` for its first ``polls_before_end``
retrieves, then ends.
"""

from __future__ import annotations

import collections.abc as cabc
import email.parser
import email.policy
import itertools
import math
import re
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import anthropic
import orjson
import typing_extensions as te
import uvicorn
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from anthropic.types.messages.batch_create_params import (
    BatchCreateParams as AnthropicBatchCreateParams,
)
from fastapi import FastAPI, Request
from fastapi.responses import Response
from openai.types import Batch, FileObject
from openai.types.batch_create_params import BatchCreateParams as OpenAIBatchCreateParams
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from openai.types.file_create_params import FileCreateParams
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tests.conftest import local_socket

FAIL_MARK = "please-fail"
CHAT_ENDPOINT = "/v1/chat/completions"
# The versions the Messages API knows: the first stable one, and the installed SDK's.
ANTHROPIC_VERSIONS = {"2023-06-01", anthropic._constants.ANTHROPIC_API_VERSION}
ANTHROPIC_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


# Strict versions of the SDKs' parameter types

STRICT = ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
_SEQUENCES = {cabc.Iterable, cabc.Sequence, cabc.Collection, list}


def strict_type(tp: Any, memo: dict[Any, Any] | None = None) -> Any:
    """``tp`` with every TypedDict forbidding unknown keys and coercing nothing.

    The SDKs type sequences as ``Iterable[...]``, which pydantic validates lazily (and
    ``str`` is iterable too): they become lists. Where a union also admits the SDK's
    response models (which allow any field), only the parameter shapes are kept.
    """
    memo = {} if memo is None else memo
    if te.is_typeddict(tp):
        if tp in memo:
            return memo[tp]
        strict: Any = te.TypedDict(tp.__name__, {})  # type: ignore[misc, operator]
        memo[tp] = strict  # before the fields: the types may be recursive
        annotations = {}
        renamed = {}
        for name, hint in te.get_type_hints(tp, include_extras=True).items():
            wire = _alias(hint) or name  # the SDK sends some keys under another name
            renamed[name] = wire
            annotations[wire] = strict_type(hint, memo)
        strict.__annotations__ = annotations
        strict.__required_keys__ = frozenset(renamed[k] for k in tp.__required_keys__)
        strict.__optional_keys__ = frozenset(renamed[k] for k in tp.__optional_keys__)
        strict.__total__ = tp.__total__
        strict.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
        return strict
    origin, args = get_origin(tp), get_args(tp)
    if origin is None or not args:
        return tp
    if origin is Annotated:
        return Annotated[(strict_type(args[0], memo), *tp.__metadata__)]
    if origin in (te.Required, te.NotRequired):
        return origin[strict_type(args[0], memo)]
    if origin in (Union, types.UnionType):
        kept = [a for a in args if not _models_only(a)] or list(args)
        return Union[tuple(strict_type(a, memo) for a in kept)]  # noqa: UP007 - built at run time
    if origin in _SEQUENCES:
        return list[strict_type(args[0], memo)]  # type: ignore[misc]
    if origin in (dict, cabc.Mapping):
        return dict[strict_type(args[0], memo), strict_type(args[1], memo)]  # type: ignore[misc]
    return tp


def _alias(hint: Any) -> str | None:
    if get_origin(hint) in (te.Required, te.NotRequired):
        hint = get_args(hint)[0]
    for meta in getattr(hint, "__metadata__", ()):
        if type(meta).__name__ == "PropertyInfo" and getattr(meta, "alias", None):
            return str(meta.alias)
    return None


def _models_only(tp: Any) -> bool:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return True
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _models_only(args[0])
    if origin in (Union, types.UnionType):
        return all(_models_only(a) for a in args)
    return False


class OpenAIBatchLine(te.TypedDict):
    """One line of an OpenAI batch input file, its body the SDK's chat request."""

    custom_id: str
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: CompletionCreateParamsNonStreaming


ANTHROPIC_CREATE = TypeAdapter(strict_type(AnthropicBatchCreateParams))
OPENAI_BATCH_CREATE = TypeAdapter(strict_type(OpenAIBatchCreateParams))
OPENAI_LINE = TypeAdapter(strict_type(OpenAIBatchLine))
OPENAI_PURPOSE = TypeAdapter(strict_type(te.get_type_hints(FileCreateParams)["purpose"]))


class Refused(Exception):
    """A request the real provider would refuse: ``status``, error ``kind``, message."""

    def __init__(self, status: int, kind: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.code = status, kind, message, code


def _invalid(exc: ValidationError) -> Refused:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
    )
    return Refused(400, "invalid_request_error", problems)


def count_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def answer(custom_id: str, system: str, user: str) -> tuple[str, int, int]:
    text = orjson.dumps({"custom_id": custom_id, "chars": len(user)}).decode()
    return text, count_tokens(system + user), count_tokens(text)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(block.get("text", "") for block in content if isinstance(block, dict))


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
    """The fake server; ``url`` is its base (Anthropic: ``url``; OpenAI: ``url + "/v1"``).

    Args:
        api_key: the only key it accepts (both providers).
        polls_before_end: retrieves a batch answers ``in_progress`` before it ends.
    """

    def __init__(self, *, api_key: str, polls_before_end: int = 1) -> None:
        self.api_key = api_key
        self.polls_before_end = polls_before_end
        self.batches: dict[str, FakeBatch] = {}
        self.files: dict[str, bytes] = {}
        self.usage: dict[str, tuple[int, int]] = {}  # custom_id → (input, output) tokens
        self.calls: list[str] = []
        self.violations: list[str] = []
        self.refused: list[str] = []
        self.refuse_next = False
        self._lock = threading.Lock()
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

    def take_violations(self) -> list[str]:
        """The violations seen so far, forgetting them (for a test that provokes some)."""
        with self._lock:
            seen, self.violations = self.violations, []
        return seen

    def assert_no_violations(self) -> None:
        seen = self.take_violations()
        assert not seen, "the fake providers saw requests a provider would refuse:\n" + \
            "\n".join(seen)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def _advance(self, b: FakeBatch) -> bool:
        """Count a retrieve; True once the batch has ended."""
        b.retrieves += 1
        if b.ended_at is None and (b.cancelled or b.retrieves > self.polls_before_end):
            b.ended_at = time.time()
        return b.ended_at is not None

    def _batch(self, batch_id: str, kind: str) -> FakeBatch:
        b = self.batches.get(batch_id)
        if b is None or b.kind != kind:
            raise Refused(404, "not_found_error", f"no batch {batch_id!r}")
        return b

    def _refused_on_purpose(self, call: str) -> Refused | None:
        if not self.refuse_next:
            return None
        self.refuse_next = False
        self.refused.append(call)
        return Refused(400, "invalid_request_error", "the fake refuses this batch")

    # Checks on every request

    def _check_anthropic_headers(self, request: Request) -> None:
        # The SDK sends the key as x-api-key (older) or a Bearer (newer); one of them.
        given = [request.headers.get("x-api-key")]
        bearer = request.headers.get("authorization")
        given.append(bearer[len("Bearer "):] if bearer and bearer.startswith("Bearer ") else bearer)
        keys = [k for k in given if k is not None]
        if keys != [self.api_key]:
            raise Refused(401, "authentication_error", "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version not in ANTHROPIC_VERSIONS:
            raise Refused(400, "invalid_request_error",
                          f"anthropic-version: {version!r} is not a known API version")

    def _check_openai_headers(self, request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise Refused(401, "invalid_request_error", "Incorrect API key provided.",
                          code="invalid_api_key")

    @staticmethod
    def _check_json(request: Request) -> None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/json":
            raise Refused(400, "invalid_request_error",
                          f"Content-Type {ctype!r}: the body must be application/json")

    # Anthropic

    def _anthropic_create(self, raw: bytes) -> FakeBatch:
        try:
            body = ANTHROPIC_CREATE.validate_json(raw)
        except ValidationError as exc:
            raise _invalid(exc) from None
        requests = body["requests"]
        if not requests:
            raise Refused(400, "invalid_request_error", "requests: at least one is needed")
        ids = [r["custom_id"] for r in requests]
        bad = [i for i in ids if not ANTHROPIC_CUSTOM_ID.match(i)]
        if bad:
            raise Refused(400, "invalid_request_error",
                          f"custom_id {bad[0]!r} does not match ^[a-zA-Z0-9_-]{{1,64}}$")
        if len(set(ids)) != len(ids):
            raise Refused(400, "invalid_request_error", "custom_id values must be unique")
        return FakeBatch(id=self._new_id("msgbatch_"), kind="anthropic",
                         requests=orjson.loads(raw)["requests"])

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
            "ended_at": (datetime.fromtimestamp(b.ended_at, UTC).isoformat()
                         if b.ended_at is not None else None),
            "cancel_initiated_at": created.isoformat() if b.cancelled else None,
            "results_url": f"{self.url}/v1/messages/batches/{b.id}/results" if ended else None,
            "archived_at": None,
        }).model_dump(mode="json")

    def _anthropic_results(self, b: FakeBatch) -> list[dict[str, Any]]:
        lines = []
        for r in b.requests:
            params = r["params"]
            user = " ".join(_text(m["content"]) for m in params["messages"] if m["role"] == "user")
            if b.cancelled:
                result: dict[str, Any] = {"type": "canceled"}
            elif FAIL_MARK in user:
                result = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "the fake refuses this one"}}}
            else:
                text, tin, tout = answer(r["custom_id"], _text(params.get("system", "")), user)
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

    def _openai_upload(self, content_type: str, raw: bytes) -> str:
        if not content_type.startswith("multipart/form-data"):
            raise Refused(400, "invalid_request_error", "files: the body must be multipart")
        fields = _multipart(content_type, raw)
        unknown = set(fields) - {"file", "purpose"}
        if unknown or "file" not in fields or "purpose" not in fields:
            raise Refused(400, "invalid_request_error",
                          f"files: fields {sorted(fields)}; expected file and purpose")
        try:
            purpose = OPENAI_PURPOSE.validate_python(fields["purpose"][0].decode())
        except ValidationError as exc:
            raise _invalid(exc) from None
        if purpose != "batch":
            raise Refused(400, "invalid_request_error", f"purpose {purpose!r}: batch expected")
        data = fields["file"][0]
        ids: set[str] = set()
        models: set[str] = set()
        for n, raw_line in enumerate(data.splitlines(), 1):
            try:
                line = OPENAI_LINE.validate_json(raw_line)
            except ValidationError as exc:
                raise Refused(400, "invalid_request_error",
                              f"line {n}: {_invalid(exc).message}") from None
            if line["custom_id"] in ids:
                raise Refused(400, "invalid_request_error",
                              f"line {n}: custom_id {line['custom_id']!r} is a duplicate")
            ids.add(line["custom_id"])
            models.add(line["body"]["model"])
        if not ids:
            raise Refused(400, "invalid_request_error", "the batch file has no requests")
        if len(models) > 1:  # OpenAI fails such a file when the batch validates it
            raise Refused(400, "invalid_request_error",
                          f"a batch file must use one model, not {sorted(models)}")
        file_id = self._new_id("file-")
        self.files[file_id] = data
        return file_id

    def _openai_create(self, raw: bytes) -> FakeBatch:
        try:
            body = OPENAI_BATCH_CREATE.validate_json(raw)
        except ValidationError as exc:
            raise _invalid(exc) from None
        if body["endpoint"] != CHAT_ENDPOINT:
            raise Refused(400, "invalid_request_error",
                          f"endpoint {body['endpoint']!r}: the fake serves {CHAT_ENDPOINT}")
        data = self.files.get(body["input_file_id"])
        if data is None:
            raise Refused(400, "invalid_request_error",
                          f"input_file_id {body['input_file_id']!r} is no uploaded file")
        for key, value in (body.get("metadata") or {}).items():
            if len(key) > 64 or len(value) > 512:
                raise Refused(400, "invalid_request_error", f"metadata {key!r} is too long")
        return FakeBatch(id=self._new_id("batch_"), kind="openai",
                         requests=[orjson.loads(x) for x in data.splitlines()],
                         input_file_id=body["input_file_id"])

    def _openai_batch(self, b: FakeBatch) -> dict[str, Any]:
        ended = b.ended_at is not None
        if ended and b.output_file_id is None and not b.cancelled:
            self._openai_outputs(b)
        status = ("cancelled" if b.cancelled else "completed") if ended else (
            "cancelling" if b.cancelled else "in_progress")
        done = int(b.ended_at) if b.ended_at is not None else None
        failed = sum(1 for r in b.requests if FAIL_MARK in orjson.dumps(r["body"]).decode())
        return Batch.model_validate({
            "id": b.id, "object": "batch", "endpoint": CHAT_ENDPOINT,
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
            system = " ".join(_text(m["content"]) for m in body["messages"]
                              if m["role"] == "system")
            user = " ".join(_text(m["content"]) for m in body["messages"] if m["role"] == "user")
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

    # The HTTP side

    def _error(self, request: Request, refused: Refused, *, violation: bool) -> Response:
        where = f"{request.method} {request.url.path}"
        if violation:
            with self._lock:
                self.violations.append(f"{where}: {refused.status} {refused.message}")
        if request.url.path.startswith("/v1/messages"):
            body: dict[str, Any] = {"type": "error", "error": {
                "type": refused.kind, "message": refused.message}}
        else:
            body = {"error": {"message": refused.message, "type": refused.kind, "param": None,
                              "code": refused.code}}
        return Response(orjson.dumps(body), status_code=refused.status,
                        media_type="application/json", headers={"x-should-retry": "false"})

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def unreadable(request: Request, call_next: Any) -> Any:
            try:
                return await call_next(request)
            except Exception as exc:  # a body the fake could not read is a violation too
                return self._error(request, Refused(400, "invalid_request_error",
                                                    f"{type(exc).__name__}: {exc}"),
                                   violation=True)

        @app.exception_handler(Refused)
        async def refused(request: Request, exc: Refused) -> Response:
            return self._error(request, exc, violation=True)

        @app.exception_handler(StarletteHTTPException)
        async def no_route(request: Request, exc: StarletteHTTPException) -> Response:
            kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
            return self._error(request, Refused(exc.status_code, kind, str(exc.detail)),
                               violation=True)

        self._anthropic_routes(app)
        self._openai_routes(app)
        return app

    def _anthropic_routes(self, app: FastAPI) -> None:
        def json(body: Any) -> Response:
            return Response(orjson.dumps(body), media_type="application/json")

        @app.post("/v1/messages/batches")
        async def a_create(request: Request) -> Response:
            self.calls.append("anthropic.create")
            self._check_anthropic_headers(request)
            self._check_json(request)
            b = self._anthropic_create(await request.body())
            if (r := self._refused_on_purpose("anthropic.create")) is not None:
                return self._error(request, r, violation=False)
            self.batches[b.id] = b
            return json(self._anthropic_batch(b))

        @app.get("/v1/messages/batches/{batch_id}")
        async def a_get(batch_id: str, request: Request) -> Response:
            self.calls.append("anthropic.retrieve")
            self._check_anthropic_headers(request)
            b = self._batch(batch_id, "anthropic")
            self._advance(b)
            return json(self._anthropic_batch(b))

        @app.get("/v1/messages/batches/{batch_id}/results")
        async def a_results(batch_id: str, request: Request) -> Response:
            self.calls.append("anthropic.results")
            self._check_anthropic_headers(request)
            b = self._batch(batch_id, "anthropic")
            if b.ended_at is None:
                raise Refused(400, "invalid_request_error", "the batch has not ended yet")
            body = b"".join(orjson.dumps(x) + b"\n" for x in self._anthropic_results(b))
            return Response(body, media_type="application/binary")

        @app.post("/v1/messages/batches/{batch_id}/cancel")
        async def a_cancel(batch_id: str, request: Request) -> Response:
            self.calls.append("anthropic.cancel")
            self._check_anthropic_headers(request)
            b = self._batch(batch_id, "anthropic")
            b.cancelled = True
            return json(self._anthropic_batch(b))

    def _openai_routes(self, app: FastAPI) -> None:
        def json(body: Any) -> Response:
            return Response(orjson.dumps(body), media_type="application/json")

        @app.post("/v1/files")
        async def o_upload(request: Request) -> Response:
            self.calls.append("openai.files.create")
            self._check_openai_headers(request)
            raw = await request.body()
            file_id = self._openai_upload(request.headers.get("content-type", ""), raw)
            data = self.files[file_id]
            filename = _multipart(request.headers["content-type"], raw)["file"][1]
            return json(FileObject.model_validate({
                "id": file_id, "object": "file", "bytes": len(data),
                "created_at": int(time.time()), "filename": filename or "upload.jsonl",
                "purpose": "batch", "status": "processed",
            }).model_dump(mode="json", exclude_none=True))

        @app.post("/v1/batches")
        async def o_create(request: Request) -> Response:
            self.calls.append("openai.batches.create")
            self._check_openai_headers(request)
            self._check_json(request)
            b = self._openai_create(await request.body())
            if (r := self._refused_on_purpose("openai.batches.create")) is not None:
                return self._error(request, r, violation=False)
            self.batches[b.id] = b
            return json(self._openai_batch(b))

        @app.get("/v1/batches/{batch_id}")
        async def o_get(batch_id: str, request: Request) -> Response:
            self.calls.append("openai.batches.retrieve")
            self._check_openai_headers(request)
            b = self._batch(batch_id, "openai")
            self._advance(b)
            return json(self._openai_batch(b))

        @app.post("/v1/batches/{batch_id}/cancel")
        async def o_cancel(batch_id: str, request: Request) -> Response:
            self.calls.append("openai.batches.cancel")
            self._check_openai_headers(request)
            b = self._batch(batch_id, "openai")
            b.cancelled = True
            return json(self._openai_batch(b))

        @app.get("/v1/files/{file_id}/content")
        async def o_content(file_id: str, request: Request) -> Response:
            self.calls.append("openai.files.content")
            self._check_openai_headers(request)
            data = self.files.get(file_id)
            if data is None:
                raise Refused(404, "invalid_request_error", f"No such File object: {file_id}")
            return Response(data, media_type="application/octet-stream")


@contextmanager
def running(*, api_key: str, polls_before_end: int = 1) -> Iterator[FakeProviders]:
    """A started fake; at exit, stopped, and every violation it saw fails the test."""
    fake = FakeProviders(api_key=api_key, polls_before_end=polls_before_end).start()
    try:
        yield fake
    finally:
        fake.stop()
    fake.assert_no_violations()


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


