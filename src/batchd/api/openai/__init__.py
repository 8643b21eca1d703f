"""The OpenAI Batch and Files API: ``/v1/files…`` and ``/v1/batches…``.

No seed document: the official ``openai`` SDK and its types (``openai.types.Batch``,
``FileObject``, …) are the wire contract.
"""

from fastapi import APIRouter, Request

from batchd.api import ingress
from batchd.api.openai import batches, files
from batchd.api.openai.errors import ERROR_SCHEMA, bind


def bearer_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


router = APIRouter(prefix="/v1", tags=["openai"])
router.include_router(files.router)
router.include_router(batches.router)
DIALECT = ingress.Dialect(
    "openai", key=bearer_key, bind=bind, error_schema=ERROR_SCHEMA,
    missing_key="You didn't provide an API key. You need to provide your API key in an "
    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
)

__all__ = ["DIALECT", "router"]
