"""The AI batch job queue dialect under ``/api/v1/batch`` (seed 003)."""

from fastapi import APIRouter

from batchd.api import ingress
from batchd.api.aibatch import routes
from batchd.api.aibatch.auth import bearer_key
from batchd.api.aibatch.errors import ERROR_SCHEMA, bind

router = APIRouter(prefix="/api/v1/batch", tags=["aibatch"])
router.include_router(routes.router)
DIALECT = ingress.Dialect(
    "aibatch", key=bearer_key, bind=bind, error_schema=ERROR_SCHEMA, more_statuses=(502,),
    missing_key="an API key is required: Authorization: Bearer <key>",
)

__all__ = ["DIALECT", "router"]
