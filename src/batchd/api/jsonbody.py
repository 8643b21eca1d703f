"""Request bodies through the one JSON policy (:mod:`batchd.domain.jsonpolicy`).

Routes that read their body themselves call :func:`parse`; routes whose body FastAPI
parses into a pydantic model use :class:`PolicyRoute` (``APIRouter(route_class=…)``),
which parses the body under the policy before FastAPI would, so FastAPI validates the
model against the policy's value instead of ``json.loads``'s (which takes ``NaN``,
lone surrogates and any integer). :func:`check_routes` makes sure no body-taking route
of the app goes around it.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from batchd.api.ingress import api_routes
from batchd.domain import jsonpolicy


def parse(body: bytes, *, where: str = "") -> Any:
    """``body`` as JSON under the policy; raises InvalidInput naming the place."""
    return jsonpolicy.loads(body, where=where)


def _is_json(request: Request) -> bool:
    ctype = request.headers.get("content-type")
    if not ctype:
        return False
    message = email.message.Message()
    message["content-type"] = ctype
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


class PolicyRoute(APIRoute):
    """An APIRoute whose JSON body FastAPI sees only after the policy accepted it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def run(request: Request) -> Response:
            # Read here, not by FastAPI: the ingress's errors (413, bad gzip) reach the
            # dialect's handler instead of FastAPI's "error parsing the body".
            body = await request.body()
            if body and _is_json(request):
                # Starlette's Request.json() returns this instead of parsing again.
                request._json = parse(body)
            return await handler(request)

        return run


def check_routes(app: FastAPI) -> None:
    """Refuse to build an app with a route whose body FastAPI would parse around the policy."""
    loose = [r.path for r in api_routes(app)
             if r.route.body_field is not None and not isinstance(r.route, PolicyRoute)]
    if loose:
        raise RuntimeError(f"routes parse JSON bodies around the policy: {', '.join(loose)}")
