"""The task batch runs dialect (seeds 001/002): ``/v0/tasks/…`` and ``/v0/task/…``."""

from fastapi import APIRouter

from batchd.api import ingress
from batchd.api.deps import bearer_or_header
from batchd.api.errors import ERROR_SCHEMA
from batchd.api.taskruns import routes
from batchd.api.taskruns.errors import use_taskruns_errors

router = APIRouter(prefix="/v0", tags=["task runs"])
router.include_router(routes.router)
DIALECT = ingress.Dialect(
    "taskruns", key=bearer_or_header, bind=use_taskruns_errors, error_schema=ERROR_SCHEMA,
    missing_key="an API key is required: x-api-key: <key>",
)

__all__ = ["DIALECT", "router"]
