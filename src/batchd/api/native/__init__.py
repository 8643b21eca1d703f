"""The native REST API under ``/api``."""

from fastapi import APIRouter

from batchd.api.native import admin, batches, tasks, webhooks

router = APIRouter(prefix="/api")
router.include_router(tasks.router)
router.include_router(batches.router)
router.include_router(admin.router)
router.include_router(webhooks.router)

__all__ = ["router"]
