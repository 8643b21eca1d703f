"""``/v1/tasks/runs…`` and ``/v1/tasks/groups…`` over :mod:`batchd.core.taskgroups`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from batchd import netguard
from batchd.api import ingress, jsonbody, openapi
from batchd.api.deps import Caller, Config, read_body
from batchd.api.parallel import schemas, wire
from batchd.api.parallel.callbacks import EVENT
from batchd.api.parallel.errors import ERROR_SCHEMA
from batchd.api.parallel.errors import body as error_body
from batchd.api.responses import JsonResponse
from batchd.core import taskgroups
from batchd.core.taskgroups import RunEnded, TaskGroups
from batchd.domain import errors
from batchd.domain.models import Batch
from batchd.events import sse
from batchd.settings import Settings

router = APIRouter(route_class=jsonbody.PolicyRoute)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
RunStatus = Literal["queued", "action_required", "running", "completed", "failed",
                    "cancelling", "cancelled"]


def task_groups(request: Request) -> TaskGroups:
    return request.app.state.task_groups  # type: ignore[no-any-return]


Groups = Annotated[TaskGroups, Depends(task_groups)]


def _doc(model: type[Any]) -> dict[str, Any]:
    return openapi.body_doc({"application/json": model})


def _cursor(value: str | None, name: str) -> int:
    if value is None or value == "":
        return -1
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise errors.InvalidInput(f"{name}: not a cursor this stream gave",
                                  details={"field": name, "kind": "value_error"})
    return int(value)


async def _check_webhooks(runs: list[dict[str, Any]], cfg: Settings, *, where: list[Any]
                          ) -> None:
    """Raises InvalidInput for the first webhook the outbound policy refuses."""
    urls = {u for u in map(taskgroups.webhook_url, runs) if u is not None}
    refused = await netguard.refusals(sorted(urls), cfg.outbound_policy()) if urls else {}
    for i, run in enumerate(runs):
        url = taskgroups.webhook_url(run)
        if url in refused:
            loc = [*where, *([i] if len(where) > 1 else []), "webhook", "url"]
            raise errors.InvalidInput(f"webhook.url: {refused[url]}", details=[
                {"loc": loc, "msg": refused[url], "type": "value_error"}])


def _stream(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)


# task runs


@router.post("/runs", status_code=202, openapi_extra=_doc(schemas.RunIn))
@ingress.accepts(ingress.BodyKind.JSON)
async def create_run(request: Request, caller: Caller, groups: Groups, cfg: Config
                     ) -> Response:
    """Start a run on its own; it is queued at once."""
    run = schemas.record(schemas.parse(schemas.RunIn, await read_body(request)))
    await _check_webhooks([run], cfg, where=["body"])
    batch, item = await groups.create_run(caller, run, webhook_event=EVENT)
    return JsonResponse(wire.task_run(batch, item), status_code=202)


@router.get("/runs/{run_id}")
async def retrieve_run(run_id: str, caller: Caller, groups: Groups) -> Response:
    batch, item = await groups.run(caller, run_id)
    return JsonResponse(wire.task_run(batch, item))


@router.get("/runs/{run_id}/input")
async def run_input(run_id: str, caller: Caller, groups: Groups) -> Response:
    _, item = await groups.run(caller, run_id)
    return JsonResponse(wire.run_input(item))


@router.get("/runs/{run_id}/result", responses={408: {
    "description": "The run is still active: ask again",
    "content": {"application/json": {"schema": ERROR_SCHEMA}}}})
async def run_result(
    run_id: str, request: Request, caller: Caller, groups: Groups, cfg: Config,
    timeout: Annotated[float | None, Query(ge=0, le=3600)] = None,
) -> Response:
    """The run's output once it has completed, waiting up to ``timeout`` seconds (408
    if it is still active then: ask again)."""
    wait_s = cfg.parallel_result_timeout_s if timeout is None else timeout
    batch, item, ended = await groups.wait_run(caller, run_id, timeout_s=wait_s,
                                               gone=request.is_disconnected)
    if not ended:
        return JsonResponse(error_body(f"run {run_id} is still {wire.STATUS[item.status]}; "
                                       "ask again for its result"), status_code=408)
    if item.status != "succeeded":
        run = wire.task_run(batch, item)
        message = (run["error"] or {}).get("message") or "the run did not complete"
        return JsonResponse(error_body(f"run {run_id} {run['status']}: {message}",
                                       {"run": run}), status_code=422)
    return JsonResponse(wire.result(batch, item))


@router.get("/runs/{run_id}/events")
async def run_events(run_id: str, request: Request, caller: Caller, groups: Groups,
                     cfg: Config) -> Response:
    """The run's state once it has ended (and its output), then the stream ends."""
    await groups.run(caller, run_id)

    async def frames() -> AsyncIterator[bytes]:
        batch, item, ended = await groups.wait_run(
            caller, run_id, timeout_s=cfg.parallel_result_timeout_s,
            gone=request.is_disconnected)
        if ended:
            yield sse.frame("task_run.state",
                            wire.run_event(batch, item, "", with_output=True))

    return _stream(frames())


# task groups


@router.post("/groups", openapi_extra=openapi.body_doc({"application/json": schemas.GroupIn},
                                                      required=False))
@ingress.accepts(ingress.BodyKind.CONTROL)
async def create_group(request: Request, caller: Caller, groups: Groups) -> Response:
    body = schemas.parse(schemas.GroupIn, await read_body(request))
    return JsonResponse(wire.group(await groups.create_group(caller, body.metadata)))


@router.get("/groups/{group_id}")
async def retrieve_group(group_id: str, caller: Caller, groups: Groups) -> Response:
    return JsonResponse(wire.group(await groups.group(caller, group_id)))


@router.post("/groups/{group_id}/runs", openapi_extra=_doc(schemas.RunsIn))
@ingress.accepts(ingress.BodyKind.JSON)
async def add_runs(group_id: str, request: Request, caller: Caller, groups: Groups,
                   cfg: Config, refresh_status: bool = False) -> Response:
    """Add up to 1,000 runs to a group (at any time); all are checked first."""
    body = schemas.parse(schemas.RunsIn, await read_body(request))
    records = [schemas.record(r, body.default_task_spec) for r in body.inputs]
    await _check_webhooks(records, cfg, where=["body", "inputs"])
    batch, run_ids = await groups.add_runs(caller, group_id, records, webhook_event=EVENT)
    return JsonResponse({"run_ids": run_ids, "status": wire.group_status(batch),
                         "event_cursor": None, "run_cursor": None})


@router.get("/groups/{group_id}/events")
async def group_events(
    group_id: str, caller: Caller, groups: Groups, last_event_id: str | None = None,
    timeout: Annotated[float | None, Query(ge=0, le=3600)] = None,
) -> Response:
    """The group's status, then each run as it ends; resumable after ``last_event_id``;
    it ends once no run of the group is active."""
    after = max(0, _cursor(last_event_id, "last_event_id"))
    events = groups.events(caller, group_id, after=after, timeout_s=timeout)
    first = await anext(events)  # a group not found is a 404, not an empty stream

    async def frames() -> AsyncIterator[bytes]:
        event: Any = first
        while event is not None:
            if isinstance(event, RunEnded):
                e = event.entry
                data = wire.run_event(_batch_of(first), e.item, str(e.n))
            else:
                data = wire.status_event(event.batch, event.cursor)
            yield sse.frame(data["type"], data)
            event = await anext(events, None)

    return _stream(frames())


def _batch_of(event: Any) -> Batch:
    return event.batch  # type: ignore[no-any-return]


@router.get("/groups/{group_id}/runs")
async def group_runs(
    group_id: str, caller: Caller, groups: Groups, include_input: bool = False,
    include_output: bool = False, last_event_id: str | None = None,
    status: RunStatus | None = None,
) -> Response:
    """Every run of the group, in the order they were added; resumable after
    ``last_event_id``."""
    batch = await groups.group(caller, group_id)
    engine_status = wire.ENGINE_STATUS.get(status) if status else None
    if status and engine_status is None:  # a state the engine never has: no run is in it
        engine_status = "none"
    runs = groups.runs(caller, group_id, after_seq=_cursor(last_event_id, "last_event_id"),
                       status=engine_status)

    async def frames() -> AsyncIterator[bytes]:
        async for item in runs:
            data = wire.run_event(batch, item, str(item.seq), with_input=include_input,
                                  with_output=include_output)
            yield sse.frame(data["type"], data)

    return _stream(frames())


@router.get("/groups/{group_id}/runs/{run_id}")
async def group_run(group_id: str, run_id: str, caller: Caller, groups: Groups) -> Response:
    batch, item = await groups.run(caller, run_id, group_id=group_id)
    return JsonResponse(wire.task_run(batch, item))
