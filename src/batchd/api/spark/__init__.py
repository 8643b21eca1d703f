"""The Spark batch pipeline dialect under ``/{tenant}/api/v4/batch`` (seed 004)."""

from fastapi import APIRouter, Depends

from batchd.api.spark import routes
from batchd.api.spark.errors import use_spark_errors

router = APIRouter(
    prefix="/{tenant}/api/v4", tags=["spark"], dependencies=[Depends(use_spark_errors)]
)
router.include_router(routes.router)

__all__ = ["router"]
