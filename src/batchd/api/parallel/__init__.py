"""Parallel's Task Run and Task Group API: ``/v1/tasks/runs…``, ``/v1/tasks/groups…``.

No seed document: the official ``parallel-web`` SDK and its types (``TaskRun``,
``TaskGroup``, ``TaskRunResult``, the events) are the wire contract.
"""

from fastapi import APIRouter, FastAPI, Request

from batchd.api import ingress
from batchd.api.deps import bearer_or_header
from batchd.api.parallel import routes
from batchd.api.parallel.errors import ERROR_SCHEMA, bind
from batchd.core.manager import BatchManager
from batchd.core.taskgroups import TaskGroups
from batchd.settings import Settings


def api_key(request: Request) -> str | None:
    """``x-api-key`` (what the SDK sends), or ``Authorization: Bearer``."""
    return bearer_or_header(request, "x-api-key")


router = APIRouter(prefix="/v1/tasks", tags=["parallel"])
router.include_router(routes.router)
DIALECT = ingress.Dialect(
    "parallel", key=api_key, bind=bind, error_schema=ERROR_SCHEMA,
    missing_key="x-api-key header is required",
)


def install(app: FastAPI, *, manager: BatchManager, settings: Settings) -> None:
    """Mount the routes and the service they use."""
    app.state.task_groups = TaskGroups(manager=manager, settings=settings)
    app.include_router(router)


__all__ = ["DIALECT", "install", "router"]
