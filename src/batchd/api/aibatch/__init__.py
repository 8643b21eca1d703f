"""The AI batch job queue dialect under ``/api/v1/batch`` (seed 003)."""

from fastapi import APIRouter, Depends

from batchd.api.aibatch import routes
from batchd.api.aibatch.errors import bind

router = APIRouter(prefix="/api/v1/batch", tags=["aibatch"], dependencies=[Depends(bind)])
router.include_router(routes.router)

__all__ = ["router"]
