"""Anthropic's Message Batches API: ``/v1/messages/batches…``.

No seed document: the official ``anthropic`` SDK and its types (``MessageBatch``,
``MessageBatchIndividualResponse``, …) are the wire contract.
"""

from fastapi import APIRouter, Request

from batchd.api import ingress
from batchd.api.anthropic import routes
from batchd.api.anthropic.errors import ERROR_SCHEMA, bind


def api_key(request: Request) -> str | None:
    """``x-api-key``, or ``Authorization: Bearer`` (the SDK's ``auth_token``)."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


router = APIRouter(prefix="/v1/messages", tags=["anthropic"])
router.include_router(routes.router)
DIALECT = ingress.Dialect(
    "anthropic", key=api_key, bind=bind, error_schema=ERROR_SCHEMA,
    missing_key="x-api-key header is required",
)

__all__ = ["DIALECT", "router"]
