"""``/v0/tasks/{task_id}/batches…`` and ``/v0/task/{task_id}/run/{run_id}`` over the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from batchd import netguard
from batchd.api import ingress, jsonbody, openapi
from batchd.api.deps import Caller, Config, Manager, read_body
from batchd.api.responses import JsonResponse
from batchd.api.taskruns import schemas, views
from batchd.api.taskruns.callbacks import EVENT
from batchd.api.taskruns.errors import invalid_run
from batchd.core.manager import BatchManager
from batchd.domain import errors
from batchd.domain.models import Batch, BatchSpec, Principal, item_public_id
from batchd.export import exporter_for
from batchd.export.table import Constant, Documents, Table, TablePage
from batchd.settings import Settings
from batchd.tasks.registry import TaskDef

router = APIRouter(route_class=jsonbody.PolicyRoute)
STATUS_MAP_CHUNK = 5000  # run ids per piece of the streamed status map
COLUMNS = ("task_id", "batch_run_id", "run_id", "status", "runner")
DOCUMENTS = ("input.arguments", "output")


RUN_DOC = {
    "type": "object",
    "properties": {
        "arguments": {"description": "the run's input, checked against the task's schema"},
        "runner": {"type": "string", "minLength": 1, "maxLength": 100},
        "callback_webhook": {"type": "object", "properties": {"url": {"type": "string"}},
                             "required": ["url"]},
    },
    "required": ["arguments"],
}
CREATE_DOC = openapi.body_doc({"application/json": {
    "type": "object",
    "properties": {"task_run_requests": {"type": "array", "minItems": 1, "items": RUN_DOC},
                   "runner": {"type": "string", "minLength": 1, "maxLength": 100}},
    "required": ["task_run_requests"],
}})


@router.post("/tasks/{task_id}/batches", openapi_extra=CREATE_DOC)
@ingress.accepts(ingress.BodyKind.JSON)
async def create_batch_run(
    task_id: str, request: Request, caller: Caller, mgr: Manager, cfg: Config
) -> Response:
    """Create a batch of runs of ``task_id``; every run's arguments are checked first."""
    task = await _task(mgr, task_id)
    body = schemas.parse(await read_body(request),
                         max_runs=cfg.max_items_per_request)
    await _check_callbacks(body.runs, cfg)
    spec = BatchSpec(
        task=task.name, version=task.version, runner=body.runner,
        parallelism=cfg.default_parallelism,
        max_attempts=task.max_attempts or cfg.default_max_attempts,
        retry_backoff_s=cfg.retry_backoff_s, metadata={views.MARKER: {}}, dialect="taskruns",
    )
    created = await mgr.create_runs(caller, spec, body.runs, webhook_event=EVENT)
    batch = created.batch
    run_ids = [i async for page in mgr.item_ids(batch) for i in page]
    return JsonResponse({
        "task_id": task.name, "batch_run_id": batch.id, "run_ids": run_ids,
        "created_at": views.timestamp(batch.created_at),
    })


@router.get("/tasks/{task_id}/batches/{batch_run_id}")
async def batch_status(
    task_id: str, batch_run_id: str, caller: Caller, mgr: Manager
) -> Response:
    """``{"status_map": {group: [run ids]}}``; groups without runs are left out."""
    batch = await _batch(mgr, caller, task_id, batch_run_id)
    return StreamingResponse(_status_map(mgr, batch), media_type="application/json")


@router.get("/tasks/{task_id}/batches/{batch_run_id}/export")
async def export_batch_run(
    task_id: str, batch_run_id: str, caller: Caller, mgr: Manager, format: str = "json"
) -> Response:
    """Every completed run, streamed: JSON (an array of runs) or CSV."""
    batch = await _batch(mgr, caller, task_id, batch_run_id)
    exporter = exporter_for(format)
    return StreamingResponse(
        exporter.stream_table(_completed_runs(mgr, batch)), media_type=exporter.media_type,
        headers={"Content-Disposition":
                 f'attachment; filename="{batch.id}.{exporter.extension}"'},
    )


@router.get("/task/{task_id}/run/{run_id}")
async def get_run(task_id: str, run_id: str, caller: Caller, mgr: Manager) -> Response:
    batch, item = await mgr.item_at(caller, run_id)
    if batch.task != task_id or not views.is_taskruns(batch):
        raise errors.NotFound(f"run {run_id} not found")
    return JsonResponse(views.run_json(batch, item))


async def _task(mgr: BatchManager, task_id: str) -> TaskDef:
    try:
        return await mgr.find_task(task_id)
    except errors.NotFound:
        raise errors.NotFound(f"task {task_id!r} not found") from None


async def _batch(mgr: BatchManager, caller: Principal, task_id: str, batch_id: str) -> Batch:
    batch = await mgr.get_batch(caller, batch_id)
    if batch.task != task_id or not views.is_taskruns(batch):
        raise errors.NotFound(f"batch {batch_id} not found")
    return batch


async def _check_callbacks(runs: list[Any], cfg: Settings) -> None:
    urls = [r.webhook_url for r in runs if r.webhook_url is not None]
    if not urls:
        return
    refused = await netguard.refusals(urls, cfg.outbound_policy())
    if refused:
        index, run = next((i, r) for i, r in enumerate(runs) if r.webhook_url in refused)
        raise invalid_run(index, "callback_webhook", refused[run.webhook_url], path=["url"])


async def _status_map(mgr: BatchManager, batch: Batch) -> AsyncIterator[bytes]:
    groups = await mgr.item_rowids_by_group(batch, views.STATUS)
    yield b'{"status_map":{'
    first_group = True
    for group, _ in views.GROUPS:
        rowids = groups.get(group)
        if not rowids:
            continue
        yield (b"" if first_group else b",") + orjson.dumps(group) + b":["
        first_group = False
        for start in range(0, len(rowids), STATUS_MAP_CHUNK):
            ids = [item_public_id(i) for i in rowids[start:start + STATUS_MAP_CHUNK]]
            yield (b"," if start else b"") + orjson.dumps(ids)[1:-1]
        yield b"]"
    yield b"}}"


def _completed_runs(mgr: BatchManager, batch: Batch) -> Table:
    async def pages() -> AsyncIterator[TablePage]:
        async for page in mgr.iter_export_pages(batch, status="succeeded"):
            n = page.count
            own_runners = page.runners.count(None) != n
            yield TablePage(
                size=n,
                columns=[Constant(batch.task), Constant(batch.id),
                         [item_public_id(i) for i in page.ids],
                         Constant("complete"),
                         [r or batch.runner for r in page.runners] if own_runners
                         else Constant(batch.runner)],
                documents=[Documents(page.inputs, page.input_lengths),
                           Documents(page.outputs, page.output_lengths)],
            )

    return Table(columns=COLUMNS, documents=DOCUMENTS, pages=pages)
