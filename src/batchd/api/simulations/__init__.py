"""The Simulations batch dialect (seed 000): ``/simulations/batch…`` and ``/health``."""

from batchd.api.simulations.routes import router

__all__ = ["router"]
