"""Bodies on the wire: JSON or BSON (gzip-encoded ones the ingress inflated); timestamps.

A request with ``Content-Type: application/bson`` (or ``Accept: application/bson``)
is answered in BSON; everything else in JSON with ``Content-Type: application/json``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bson
from bson.errors import BSONError
from fastapi import Request
from fastapi.responses import Response

from batchd.api import jsonbody
from batchd.api.deps import read_body
from batchd.api.ingress import MalformedBody, UnsupportedMediaType
from batchd.api.responses import JsonResponse
from batchd.domain import errors, jsonpolicy

JSON = "application/json"
BSON = "application/bson"
_JSON_TYPES = {JSON, "text/json", ""}
_BSON_TYPES = {BSON, "application/x-bson"}




def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def wants_bson(request: Request) -> bool | None:
    """True or False when the request says which format it wants back, else None."""
    if media_type(request) in _BSON_TYPES:
        return True
    accept = request.headers.get("accept", "").lower()
    if "application/bson" in accept or "application/x-bson" in accept:
        return True
    if "application/json" in accept:
        return False
    return None


def render(content: dict[str, Any], *, as_bson: bool, status_code: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    if as_bson:
        return Response(bson.encode(content), status_code=status_code, media_type=BSON,
                        headers=headers)
    return JsonResponse(content, status_code=status_code, headers=headers)


async def read_document(request: Request) -> tuple[dict[str, Any], bool]:
    """The body as an object, and whether it came as BSON.

    Raises:
        MalformedBody: not decodable, or not an object.
        UnsupportedMediaType: neither JSON nor BSON, or an unknown content encoding.
        errors.LimitExceeded: larger than the route's limit (the ingress), after gunzip.
    """
    ctype = media_type(request)
    is_bson = ctype in _BSON_TYPES
    if not is_bson and ctype not in _JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r} is not supported; send application/json or application/bson"
        )
    body = await read_body(request)
    try:
        data = _decode_bson(body) if is_bson else (jsonbody.parse(body) if body.strip() else {})
    except errors.InvalidInput as exc:  # the JSON policy: the details name the place
        raise MalformedBody(exc.message, details=exc.details) from None
    if not isinstance(data, dict):
        raise MalformedBody(
            "the body must be an object",
            details=[{"loc": ["body"], "msg": "expected an object", "type": "dict_type"}],
        )
    return data, is_bson


def _decode_bson(body: bytes) -> Any:
    try:
        data = bson.decode(body)
    except (BSONError, ValueError, TypeError, IndexError, RecursionError) as exc:
        raise MalformedBody(
            f"the body is not valid BSON: {exc}",
            details=[{"loc": ["body"], "msg": "invalid BSON", "type": "body_invalid"}],
        ) from None
    return jsonpolicy.check(data)


def timestamp(ts: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, as the document writes them."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
