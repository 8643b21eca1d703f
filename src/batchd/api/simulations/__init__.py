"""The Simulations batch dialect (seed 000): ``/simulations/batch…`` and ``/health``."""

from batchd.api import ingress
from batchd.api.deps import bearer_or_header
from batchd.api.simulations.errors import ERROR_SCHEMA, bind
from batchd.api.simulations.routes import router

DIALECT = ingress.Dialect("simulations", key=bearer_or_header, bind=bind,
                          error_schema=ERROR_SCHEMA)

__all__ = ["DIALECT", "router"]
