"""``/api/tasks``: what can be run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from batchd.api import ingress, jsonbody, openapi
from batchd.api.deps import Caller, Manager, read_body
from batchd.domain import errors
from batchd.tasks.kinds.spec import TaskSpec

router = APIRouter(tags=["tasks"], route_class=jsonbody.PolicyRoute)
MAX_DEFINITION_BYTES = 1024 * 1024


@router.get("/tasks")
async def list_tasks(caller: Caller, mgr: Manager) -> dict[str, Any]:
    await mgr.sync_tasks()  # tasks defined through other servers too
    reg = mgr.registry
    return {"data": [t.describe(reg.versions(t.name)) for t in reg.all_latest()]}


@router.post("/tasks", status_code=201,
             openapi_extra=openapi.body_doc({"application/json": TaskSpec}))
@ingress.accepts(ingress.BodyKind.JSON)
async def define_task(request: Request, caller: Caller, mgr: Manager) -> Any:
    """Define a task of kind ``python``, ``http`` or ``llm`` (admin keys): ``{name,
    version?, kind, description?, input_schema?, output_schema?, runners?, cost?,
    timeout_s?, max_attempts?, config}``. Kept in the database for every server and
    worker; a version cannot be changed once defined (the same body again is fine)."""
    data = jsonbody.parse(await read_body(request, MAX_DEFINITION_BYTES) or b"null")
    if not isinstance(data, dict):
        raise errors.InvalidInput(
            "body must be a JSON object",
            details=[{"loc": ["body"], "msg": "expected an object", "type": "dict_type"}],
        )
    task = await mgr.define_task(caller, data)
    return task.describe(mgr.registry.versions(task.name))


@router.get("/tasks/{name}")
async def get_task(name: str, caller: Caller, mgr: Manager, version: str | None = None) -> Any:
    task = await mgr.find_task(name, version)
    return task.describe(mgr.registry.versions(name))
