"""The task batch runs dialect (seeds 001/002): ``/v0/tasks/…`` and ``/v0/task/…``."""

from fastapi import APIRouter, Depends

from batchd.api.taskruns import routes
from batchd.api.taskruns.errors import use_taskruns_errors

router = APIRouter(prefix="/v0", tags=["task runs"], dependencies=[Depends(use_taskruns_errors)])
router.include_router(routes.router)

__all__ = ["router"]
