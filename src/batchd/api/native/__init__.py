"""The native REST API under ``/api``."""

from fastapi import APIRouter

from batchd.api import ingress
from batchd.api.deps import bearer_or_header
from batchd.api.errors import ERROR_SCHEMA, native_error
from batchd.api.native import admin, batches, tasks, webhooks

router = APIRouter(prefix="/api")
router.include_router(tasks.router)
router.include_router(batches.router)
router.include_router(admin.router)
router.include_router(webhooks.router)


def bind(request: ingress.Request) -> None:
    request.state.error_handler = native_error


DIALECT = ingress.Dialect(
    "native", key=bearer_or_header, bind=bind, error_schema=ERROR_SCHEMA,
    missing_key="an API key is required: Authorization: Bearer <key> or x-api-key",
)

__all__ = ["DIALECT", "router"]
