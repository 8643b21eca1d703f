"""The Spark batch pipeline dialect under ``/{tenant}/api/v4/batch`` (seed 004)."""

from fastapi import APIRouter

from batchd.api import ingress
from batchd.api.spark import publish, routes
from batchd.api.spark.auth import MISSING_KEY, spark_key
from batchd.api.spark.errors import ERROR_SCHEMA, use_spark_errors
from batchd.api.spark.wire import BSON, JSON

router = APIRouter(prefix="/{tenant}/api/v4", tags=["spark"])
router.include_router(routes.router)
DIALECT = ingress.Dialect("spark", key=spark_key, bind=use_spark_errors,
                          error_schema=ERROR_SCHEMA, missing_key=MISSING_KEY,
                          error_media=(JSON, BSON))

# Publishing workbook services is a native route (``/api/services``, the native dialect).
publish_router = publish.router

__all__ = ["DIALECT", "publish_router", "router"]
