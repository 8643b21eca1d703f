"""``/api/services``: publish an Excel workbook as a version of a Spark service (native).

``POST /api/services/{folder}/{name}/versions?version=1.2.3&filename=Sales.xlsx`` with
the ``.xlsx`` file as the body (any content type; ``curl --data-binary @Sales.xlsx``),
operator key. The answer (201) says what the version takes and gives::

    {"service": "folder/name", "version": "1.2.3", "uri": "folder/name[1.2.3]",
     "service_id": …, "version_id": …, "kind": "workbook", "filename": …, "sha256": …,
     "size_bytes": …, "inputs": […], "outputs": […], "vectorised_share": 1.0}

A workbook the engine cannot run is a 422 whose ``detail`` names the ``cell`` and the
``function``; the same version with another file is a 409. ``GET
/api/services/{folder}/{name}`` lists a service's versions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from batchd.api import ingress
from batchd.api.deps import Caller, Manager, read_body
from batchd.api.spark import services
from batchd.core.services import MAX_WORKBOOK_BYTES, Published, Services

router = APIRouter(prefix="/api", tags=["services"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


@router.post("/services/{folder}/{name}/versions", status_code=201, openapi_extra={
    "requestBody": {"required": True, "content": {
        XLSX: {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
@ingress.accepts(ingress.BodyKind.JSON)  # held whole, under the JSON body limit
async def publish_version(
    request: Request, folder: str, name: str, caller: Caller,
    version: Annotated[str, Query(min_length=1, max_length=50)],
    filename: Annotated[str, Query(min_length=1, max_length=255)] = "workbook.xlsx",
) -> dict[str, Any]:
    """Publish the ``.xlsx`` body as ``version`` of ``folder/name`` (operator key)."""
    content = await read_body(request, MAX_WORKBOOK_BYTES)
    published = await _services(request).publish(
        caller, service=f"{folder}/{name}", version=version, content=content,
        filename=filename)
    return _published(published)


@router.get("/services/{folder}/{name}")
async def service_versions(folder: str, name: str, caller: Caller,
                           mgr: Manager) -> dict[str, Any]:
    """A service's versions, oldest first, with what each takes and gives."""
    service = f"{folder}/{name}"
    task = await mgr.find_task(service)
    versions = mgr.registry.versions(task.name)
    return {"service": service, "service_id": services.service_id(service), "data": [
        _version(mgr.registry.get(service, v).describe(versions)) for v in versions]}


def _version(t: dict[str, Any]) -> dict[str, Any]:
    return {"version": t["version"], "uri": f"{t['name']}[{t['version']}]",
            "version_id": services.version_id(t["name"], t["version"]), "kind": t["kind"],
            "description": t["description"],
            "inputs": list((t.get("input_schema") or {}).get("properties") or ()),
            "outputs": list((t.get("output_schema") or {}).get("properties") or ())}


def _published(p: Published) -> dict[str, Any]:
    name, version = p.task.name, p.task.version
    return {
        "service": name, "version": version, "uri": f"{name}[{version}]",
        "service_id": services.service_id(name), "version_id": services.version_id(name, version),
        "kind": p.task.kind, "filename": p.filename, "sha256": p.sha256,
        "size_bytes": p.size_bytes, "inputs": p.inputs, "outputs": p.outputs,
        "vectorised_share": round(p.vectorised_share, 4),
    }
