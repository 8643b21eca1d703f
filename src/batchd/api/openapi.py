"""The OpenAPI document, made honest in one place.

FastAPI documents what it parses itself; most of batchd's routes read their bodies
themselves (to stream them, or to answer in their dialect's words), and every route
can be refused by the ingress before it runs. :func:`install` completes FastAPI's
document from the ingress's own table, so the two cannot drift apart:

- every operation lists the error statuses it can answer, each with its dialect's
  error body: 401 (no key or a wrong one) and 403/404/409/422/429 on the routes that
  need a key, 413 (the route's body limit) and 415 (an unknown ``Content-Encoding``)
  and 503 (the database is unavailable) everywhere;
- ``x-batchd-body`` names the body a route takes (``control``, ``json``, ``stream``);
- request-body schemas given with :func:`body_doc` keep their pydantic ``$defs``,
  moved to ``components/schemas`` where references can reach them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from batchd.api.ingress import Route

F = TypeVar("F", bound=Callable[..., Any])
REF_PREFIX = "#/components/schemas/"

STATUS_TEXT = {
    400: "The request cannot be carried out as sent (an unknown task, a batch too "
         "large for the tier, a budget it would exceed, an undecodable body)",
    401: "No API key, or one that is not valid",
    403: "The key may not do this (its role, or another tenant's resource)",
    404: "Something the request names does not exist for this key's tenant",
    409: "The request conflicts with the resource's state",
    413: "The body is larger than the route's limit, before or after decompression",
    415: "The Content-Encoding (or Content-Type) is not supported",
    422: "The request is not valid: the body names where",
    429: "A quota or rate limit was reached, or the server is busy; see Retry-After",
    502: "The model provider failed",
    503: "The database is unavailable; retry after Retry-After seconds",
}
EVERY_ROUTE = (413, 415, 503)
WITH_A_KEY = (400, 401, 403, 404, 409, 422, 429)


# A time field pydantic reads from ISO 8601 text or from seconds since the epoch.
TIME_OR_EPOCH: dict[str, Any] = {"anyOf": [
    {"type": "string", "format": "date-time"},
    {"type": "number", "description": "seconds since the epoch"},
    {"type": "null"},
]}


def body_doc(contents: dict[str, type[BaseModel] | dict[str, Any]], *,
             required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a body the route reads itself: media type → a
    pydantic model or a JSON schema."""
    content = {
        media: {"schema": (model.model_json_schema() if isinstance(model, type) else model)}
        for media, model in contents.items()
    }
    return {"requestBody": {"required": required, "content": content}}


def params(**schemas: dict[str, Any]) -> Callable[[F], F]:
    """Document query parameters a route parses itself (as text, to answer a bad one in
    its dialect's words) with the schema of what they must be."""
    def mark(endpoint: F) -> F:
        endpoint.__batchd_params__ = schemas  # type: ignore[attr-defined]
        return endpoint
    return mark


def install(app: FastAPI, table: list[Route]) -> None:
    """Serve the completed document at ``/openapi.json``."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            complete(doc, table)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any], table: list[Route]) -> None:
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    _hoist_defs(doc["paths"], components)
    for route in table:
        operations = doc["paths"].get(route.path, {})
        for method in route.methods:
            op = operations.get(method.lower())
            if op is None:
                continue
            op["x-batchd-body"] = route.body.value
            documented = getattr(route.endpoint, "__batchd_params__", {})
            for param in op.get("parameters", ()):
                if param.get("in") == "query" and param["name"] in documented:
                    param["schema"] = documented[param["name"]]
            statuses = [*EVERY_ROUTE, *(() if route.public else WITH_A_KEY),
                        *route.dialect.more_statuses]
            responses = op.setdefault("responses", {})
            for status in sorted(set(statuses)):
                entry = responses.setdefault(str(status), {"description": STATUS_TEXT[status]})
                entry["description"] = entry.get("description") or STATUS_TEXT[status]
                entry["content"] = {media: {"schema": route.dialect.error_schema}
                                    for media in route.dialect.error_media}


def _hoist_defs(node: Any, components: dict[str, Any]) -> None:
    """Move every ``$defs`` under ``node`` to ``components`` and point its references there."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if defs:
            for name, schema in defs.items():
                _hoist_defs(schema, components)
                components.setdefault(name, schema)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = REF_PREFIX + ref.removeprefix("#/$defs/")
        for value in node.values():
            _hoist_defs(value, components)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, components)
