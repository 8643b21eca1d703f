"""Bodies on the wire: JSON or BSON, optionally gzip-encoded; timestamps.

A request with ``Content-Type: application/bson`` (or ``Accept: application/bson``)
is answered in BSON; everything else in JSON with ``Content-Type: application/json``.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

import bson
from bson.errors import BSONError
from fastapi import Request
from fastapi.responses import Response

from batchd.api import jsonbody
from batchd.api.deps import read_body
from batchd.api.responses import JsonResponse
from batchd.domain import errors, jsonpolicy

JSON = "application/json"
BSON = "application/bson"
_JSON_TYPES = {JSON, "text/json", ""}
_BSON_TYPES = {BSON, "application/x-bson"}


class MalformedBody(errors.InvalidInput):
    """The body cannot be decoded at all (bad JSON, BSON or gzip)."""

    code = "malformed_body"


class UnsupportedMediaType(errors.BatchdError):
    code = "unsupported_media_type"


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


async def read_document(request: Request, *, limit: int) -> tuple[dict[str, Any], bool]:
    """The body as an object, and whether it came as BSON.

    Raises:
        MalformedBody: not decodable, or not an object.
        UnsupportedMediaType: neither JSON nor BSON, or an unknown content encoding.
        errors.LimitExceeded: larger than ``limit`` bytes, before or after gunzip.
    """
    ctype = media_type(request)
    is_bson = ctype in _BSON_TYPES
    if not is_bson and ctype not in _JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r} is not supported; send application/json or application/bson"
        )
    body = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = gunzip(body, limit=limit)
    elif encoding not in ("identity", ""):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send gzip or nothing"
        )
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


def gunzip(body: bytes, *, limit: int) -> bytes:
    """Decompress a gzip body, refusing one that inflates past ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise errors.LimitExceeded(
                f"the decompressed body is larger than the limit of {limit} bytes"
            )
        if not inflater.eof:
            raise MalformedBody("the gzip body is truncated")
    except zlib.error as exc:
        raise MalformedBody(f"the body is not valid gzip: {exc}") from None
    return out


def timestamp(ts: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, as the document writes them."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )
