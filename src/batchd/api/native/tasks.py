"""``/api/tasks``: what can be run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from batchd.api.deps import Caller, Manager

router = APIRouter(tags=["tasks"])


@router.get("/tasks")
async def list_tasks(caller: Caller, mgr: Manager) -> dict[str, Any]:
    reg = mgr.registry
    return {"data": [t.describe(reg.versions(t.name)) for t in reg.all_latest()]}


@router.get("/tasks/{name}")
async def get_task(name: str, caller: Caller, mgr: Manager, version: str | None = None) -> Any:
    task = mgr.task(name, version)
    return task.describe(mgr.registry.versions(name))
