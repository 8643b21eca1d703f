"""The one ingress layer: every request's key and body size are settled here, before
any route code runs and before any body byte is read.

An ASGI middleware in front of the routes. For each request it finds the route
(its own table of every route's path, methods, dialect and body kind, built once when
the app is made), then:

1. gives the request its dialect's error shape (the dialect's ``bind``), so that
   everything below, the errors here included, answers in the dialect's words;
2. checks the key the dialect's way (``Dialect.key``) unless the route is public: a
   missing or wrong key is a 401 at once, the body unread; the principal is left in
   ``request.state.principal`` for the route's own dependencies;
3. refuses a declared ``Content-Length`` over the route's limit (413), and an unknown
   ``Content-Encoding`` (415);
4. hands the route a ``receive`` that counts the bytes as they arrive (413 as soon
   as the limit is passed) and inflates gzip or deflate bodies piece by piece under
   the same limit and a ratio cap (a bomb is a 413 after a bounded amount of work).

Each route declares what body it takes with :func:`accepts` (default: a small control
body) and whether it needs a key with :func:`public`. :func:`install` refuses to build
an app with a route it cannot place.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.settings import Settings

# Newer FastAPI keeps included routers whole (and lists them through this); older
# versions copy their routes into the app's.
iter_route_contexts: Callable[..., Iterator[Any]] | None = getattr(
    fastapi.routing, "iter_route_contexts", None)

F = TypeVar("F", bound=Callable[..., Any])

# Inflated bytes may be at most this many times the bytes on the wire, past the first
# MiB: ordinary JSON and NDJSON compress 5 to 50 times; a bomb, a thousand.
MAX_INFLATE_RATIO = 200
INFLATE_FLOOR = 1 << 20
# The most a compressed body inflates to per message handed to the route.
INFLATE_STEP = 1 << 20
ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class MalformedBody(errors.InvalidInput):
    """The body cannot be decoded at all (bad JSON, BSON or compression)."""

    code = "malformed_body"


class UnsupportedMediaType(errors.BatchdError):
    code = "unsupported_media_type"


class BodyKind(StrEnum):
    """What a route reads, which sets its limit (see :meth:`Settings.body_limit`)."""

    CONTROL = "control"  # a small JSON object, or nothing: actions, keys, settings
    JSON = "json"  # a JSON (or BSON) document held whole while it is parsed
    STREAM = "stream"  # NDJSON or CSV parsed as it arrives


def accepts(kind: BodyKind) -> Callable[[F], F]:
    """Declare the body a route's endpoint reads (put it under the route decorator)."""
    def mark(endpoint: F) -> F:
        endpoint.__batchd_body__ = kind  # type: ignore[attr-defined]
        return endpoint
    return mark


def public(endpoint: F) -> F:
    """Declare a route that answers without a key (health, the dialects' own checks)."""
    endpoint.__batchd_public__ = True  # type: ignore[attr-defined]
    return endpoint


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a dialect's requests carry their key and take their error shape (and how
    the OpenAPI document describes that shape)."""

    name: str
    key: Callable[[Request], str | None]
    bind: Callable[[Request], None]
    error_schema: dict[str, Any]
    missing_key: str = "an API key is required"
    error_media: tuple[str, ...] = ("application/json",)
    more_statuses: tuple[int, ...] = ()  # errors beyond the common ones


@dataclass(frozen=True, slots=True)
class Route:
    """A route as the ingress knows it."""

    path: str
    regex: re.Pattern[str]
    methods: frozenset[str]
    dialect: Dialect
    body: BodyKind
    public: bool
    endpoint: Callable[..., Any]


class MethodNotAllowed(errors.BatchdError):
    code = "method_not_allowed"


def limit_of(kind: BodyKind, cfg: Settings) -> int:
    if kind is BodyKind.STREAM:
        return cfg.max_body_bytes
    if kind is BodyKind.JSON:
        return min(cfg.max_json_body_bytes, cfg.max_body_bytes)
    return min(cfg.max_control_body_bytes, cfg.max_body_bytes)


def too_large(limit: int) -> errors.LimitExceeded:
    return errors.LimitExceeded(f"request body is larger than the limit of {limit} bytes",
                                details={"limit": limit})


class Ingress:
    """The ASGI middleware (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, routes: list[Route], fallback: Dialect,
                 manager: BatchManager, settings: Settings) -> None:
        self.app = app
        self.routes = routes
        self.fallback = fallback
        self.manager = manager
        self.settings = settings

    def _find(self, scope: Scope) -> tuple[Route | None, list[Route]]:
        """The route of the request, or the routes of its path (if the method is wrong)."""
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        method = scope["method"]
        others: list[Route] = []
        for route in self.routes:
            if route.regex.match(path) and (not others or route.path == others[0].path):
                if method in route.methods:
                    return route, others
                others.append(route)  # the same path, another method
        return None, others

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, others = self._find(scope)
        request = Request(scope)
        dialect = route.dialect if route is not None else (
            others[0].dialect if others else self.fallback)
        dialect.bind(request)
        try:
            if route is None and others:
                allowed = sorted({m for r in others for m in r.methods})
                raise MethodNotAllowed(f"{scope['method']} is not allowed here; use "
                                       f"{', '.join(allowed)}", details={"allow": allowed})
            if route is not None and not route.public:
                key = dialect.key(request)
                if not key:
                    raise errors.Unauthorized(dialect.missing_key)
                request.state.principal = await self.manager.authenticate(key)
            limit = limit_of(route.body if route is not None else BodyKind.CONTROL,
                             self.settings)
            body = _body_reader(request, receive, limit)
        except errors.BatchdError as exc:
            response = request.state.error_handler(exc)
            if isinstance(exc, MethodNotAllowed):
                response.headers["Allow"] = ", ".join(exc.details["allow"])
            await response(scope, receive, send)
            return
        await self.app(scope, body, send)


def _body_reader(request: Request, receive: Receive, limit: int) -> Receive:
    """``receive``, counted under ``limit`` and inflated if the body is compressed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large(limit)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return _Counted(receive, limit)
    wbits = ENCODINGS.get(encoding)
    if wbits is None:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or nothing",
            details={"header": "content-encoding", "supported": ["gzip", "deflate"]},
        )
    return _Inflated(receive, limit, wbits)


class _Counted:
    __slots__ = ("limit", "receive", "seen")

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.seen = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise too_large(self.limit)
        return message


class _Inflated:
    """Inflates a compressed body at most :data:`INFLATE_STEP` bytes per message."""

    def __init__(self, receive: Receive, limit: int, wbits: int) -> None:
        self.receive = receive
        self.limit = limit
        self.wbits = wbits
        self.inflater = zlib.decompressobj(wbits=wbits)
        self.pending = b""  # compressed bytes not yet inflated
        self.more = True  # more body to come from the client
        self.wire = 0
        self.inflated = 0

    async def __call__(self) -> Message:
        while not self.pending and self.more:
            message = await self.receive()
            if message["type"] != "http.request":
                return message
            self.pending = message.get("body", b"")
            self.more = bool(message.get("more_body", False))
            self.wire += len(self.pending)
        out = self._step()
        done = not self.pending and not self.more
        if done and not self.inflater.eof:
            problem = f"the {self._name()} body is truncated"
            raise MalformedBody(problem, details=[
                {"loc": ["body"], "msg": problem, "type": "body_invalid"}])
        return {"type": "http.request", "body": out, "more_body": not done}

    def _name(self) -> str:
        return "deflate" if self.wbits == zlib.MAX_WBITS else "gzip"

    def _step(self) -> bytes:
        allowed = min(self.limit, max(INFLATE_FLOOR, MAX_INFLATE_RATIO * self.wire)) - self.inflated
        try:
            if self.inflater.eof:  # a further gzip member, or bytes after the end
                # (``pending`` already starts with the ended stream's unused data)
                rest, self.pending = self.pending, b""
                if not rest.strip(b"\0"):
                    return b""
                self.inflater = zlib.decompressobj(wbits=self.wbits)
                self.pending = rest
            out = self.inflater.decompress(self.pending, min(INFLATE_STEP, allowed + 1))
        except zlib.error as exc:
            message = f"the body is not valid {self._name()}: {exc}"
            raise MalformedBody(message, details=[
                {"loc": ["body"], "msg": message, "type": "body_invalid"}]) from None
        self.pending = self.inflater.unconsumed_tail
        if self.inflater.eof:
            self.pending = self.inflater.unused_data + self.pending
        self.inflated += len(out)
        if len(out) > allowed:
            if self.inflated > self.limit:
                raise too_large(self.limit)
            raise errors.LimitExceeded(
                f"the compressed body inflates more than {MAX_INFLATE_RATIO} times",
                details={"ratio": MAX_INFLATE_RATIO},
            )
        return out


@dataclass(frozen=True, slots=True)
class RouteView:
    """An API route as the app serves it: the route as declared, its full path."""

    route: APIRoute
    path: str
    methods: frozenset[str]

    @property
    def endpoint(self) -> Callable[..., Any]:
        return self.route.endpoint


def api_routes(app: FastAPI) -> Iterator[RouteView]:
    """Every API route of the app, included routers' too."""
    if iter_route_contexts is not None:
        for context in iter_route_contexts(app.routes):
            if isinstance(context.original_route, APIRoute):
                yield RouteView(context.original_route, context.path,
                                frozenset(context.methods or ()))
    else:  # pragma: no cover - older FastAPI
        for r in app.routes:
            if isinstance(r, APIRoute):
                yield RouteView(r, r.path, frozenset(r.methods or ()))


def endpoints(*routers: Any) -> Iterator[Callable[..., Any]]:
    """The endpoints of some routers (included routers' too)."""
    for router in routers:
        if iter_route_contexts is not None:
            for context in iter_route_contexts(router.routes):
                if isinstance(context.original_route, APIRoute):
                    yield context.original_route.endpoint
        else:  # pragma: no cover - older FastAPI
            for route in router.routes:
                yield route.endpoint


def install(app: FastAPI, *, dialects: dict[Callable[..., Any], Dialect], fallback: Dialect,
            manager: BatchManager, settings: Settings) -> list[Route]:
    """Put the ingress in front of ``app``'s routes; ``dialects`` maps each endpoint to
    its dialect. Raises if a route has none (it would go around the key check).
    Returns the ingress's table of routes."""
    table: list[Route] = []
    unplaced: list[str] = []
    for route in api_routes(app):
        dialect = dialects.get(route.endpoint)
        if dialect is None:
            unplaced.append(route.path)
            continue
        table.append(Route(
            path=route.path, regex=compile_path(route.path)[0],
            methods=route.methods,
            dialect=dialect,
            body=getattr(route.endpoint, "__batchd_body__", BodyKind.CONTROL),
            public=getattr(route.endpoint, "__batchd_public__", False),
            endpoint=route.endpoint,
        ))
    if unplaced:
        raise RuntimeError(f"routes without a dialect for the ingress: {', '.join(unplaced)}")
    app.add_middleware(Ingress, routes=table, fallback=fallback, manager=manager,
                       settings=settings)
    return table


def principal_of(request: Request) -> Any:
    """The caller the ingress authenticated (routes' key dependencies read it)."""
    found = getattr(request.state, "principal", None)
    if found is None:
        raise errors.Unauthorized("an API key is required")
    return found


