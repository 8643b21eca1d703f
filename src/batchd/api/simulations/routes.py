"""``/simulations/batch…`` and ``/health``: the Simulations batch API over the engine."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from batchd import __version__
from batchd.api import ingress, jsonbody, openapi
from batchd.api.deps import Config, Manager, read_body
from batchd.api.responses import JsonResponse
from batchd.api.simulations import errors as wire
from batchd.api.simulations import schemas, states, templates, views
from batchd.api.simulations.calls import Call, Caller
from batchd.core import usage
from batchd.core.ingest import json_array_records
from batchd.core.manager import Admission
from batchd.domain import errors
from batchd.domain.models import Batch, BatchSpec
from batchd.tasks.dispatch import SIMULATION

router = APIRouter(tags=["simulations"], route_class=jsonbody.PolicyRoute)
QueryText = Annotated[str | None, Query()]


def respond(request: Request, body: dict[str, Any], status_code: int = 200) -> Response:
    return JsonResponse(
        body, status_code=status_code, headers={"X-Request-ID": wire.request_id(request)}
    )


def int_param(name: str, value: str | None, *, default: int, low: int, high: int) -> int:
    # Checked here rather than by FastAPI so a bad value is still a metered call.
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise errors.InvalidInput(f"{name}: must be an integer, not {value!r}") from None
    if not low <= number <= high:
        raise errors.InvalidInput(f"{name}: must be between {low} and {high}")
    return number


async def batch_view(call: Call, batch: Batch) -> dict[str, Any]:
    return views.batch_json(batch, await call.mgr.items_of(batch))


@router.get("/health")
@ingress.public
async def health(request: Request, mgr: Manager) -> Response:
    """Liveness, with a round trip to the database."""
    await mgr.ping()
    return respond(request, {"status": "healthy", "version": __version__})


@router.post("/simulations/batch", status_code=202,
             openapi_extra=openapi.body_doc({"application/json": schemas.BatchCreate}))
@ingress.accepts(ingress.BodyKind.JSON)
async def create_batch(request: Request, call: Caller, cfg: Config) -> Response:
    """Submit simulations; returns at once with the batch (202)."""
    async with call.change():
        body = schemas.parse(schemas.BatchCreate, await read_body(request))
        call.mgr.check_batch_size(call.principal, len(body.simulations))
        records = templates.records(call.mgr, body.simulations)
        spec = BatchSpec(
            task=SIMULATION, version="", priority=body.priority,
            parallelism=body.parallel_jobs, fail_fast=body.fail_fast,
            budget_usd=body.budget_cap_usd, metadata=body.metadata or {},
            max_attempts=cfg.default_max_attempts, retry_backoff_s=cfg.retry_backoff_s,
            dialect="simulations",
        )
        created = await call.mgr.create_batch(
            call.principal, spec, json_array_records(records),
            admission=Admission(call=call.metering()),
        )
    return respond(request, await batch_view(call, created.batch), 202)


def int_doc(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


@router.get("/simulations/batch")
@openapi.params(page=int_doc(1, 1_000_000), page_size=int_doc(1, 100))
async def list_batches(
    request: Request, call: Caller, status: QueryText = None, status_filter: QueryText = None,
    page: QueryText = None, page_size: QueryText = None,
) -> Response:
    """Your batches, newest first; ``status`` (or ``status_filter``) in any letter case."""
    await call.read()
    number = int_param("page", page, default=1, low=1, high=1_000_000)
    size = int_param("page_size", page_size, default=20, low=1, high=100)
    wanted = status or status_filter
    found = states.parse_filter(wanted) if wanted else None
    rows, total = await call.mgr.page_batches(
        call.principal, offset=(number - 1) * size, limit=size, task=SIMULATION,
        statuses=found.statuses if found else None, started=found.started if found else None,
    )
    return respond(request, {
        "batches": [await batch_view(call, b) for b in rows],
        "total": total, "page": number, "page_size": size,
    })


@router.get("/simulations/batch/stats")
async def stats(request: Request, call: Caller) -> Response:
    await call.read()
    totals = await call.mgr.batch_totals(call.principal, task=SIMULATION)
    return respond(request, views.stats_json(totals))


@router.get("/simulations/batch/usage")
async def current_usage(request: Request, call: Caller) -> Response:
    """Usage and quotas of this billing period (answered even past the call quota)."""
    await call.read(enforce=False)
    now = call.mgr.clock()
    used = await call.mgr.usage(call.principal, usage.period_of(now))
    return respond(request, views.usage_json(call.principal, call.limits, used, now=now))


@router.get("/simulations/batch/usage/history")
@openapi.params(periods=int_doc(1, 120))
async def usage_history(request: Request, call: Caller, periods: QueryText = None) -> Response:
    await call.read(enforce=False)
    n = int_param("periods", periods, default=6, low=1, high=120)
    now = call.mgr.clock()
    current = usage.period_of(now)
    past = usage.previous_periods(current, n)
    found = await call.mgr.usage_by_period(call.principal, [current, *past])
    return respond(request, {
        "current": views.usage_json(call.principal, call.limits, found[current], now=now),
        "history": [views.period_json(p, found[p]) for p in past],
    })


@router.get("/simulations/batch/{batch_id}")
async def get_batch(batch_id: str, request: Request, call: Caller) -> Response:
    await call.read()
    batch = await call.mgr.batch_for(call.principal, batch_id, task=SIMULATION)
    return respond(request, await batch_view(call, batch))


@router.get("/simulations/batch/{batch_id}/jobs")
async def get_jobs(batch_id: str, request: Request, call: Caller) -> Response:
    await call.read()
    batch = await call.mgr.batch_for(call.principal, batch_id, task=SIMULATION)
    items = await call.mgr.items_of(batch)
    return respond(request, {
        "batch": views.batch_json(batch, items),
        "jobs": [views.job_json(i, batch) for i in items],
    })


@router.post("/simulations/batch/{batch_id}/cancel",
             openapi_extra=openapi.body_doc({"application/json": schemas.CancelBody},
                                           required=False))
async def cancel_batch(batch_id: str, request: Request, call: Caller, cfg: Config) -> Response:
    """Cancel pending jobs and, unless ``cancel_running`` is false, running ones."""
    async with call.change():
        body = schemas.parse(
            schemas.CancelBody, await read_body(request), empty_ok=True
        )
        batch = await call.mgr.batch_for(call.principal, batch_id, task=SIMULATION)
        if batch.is_terminal and batch.status != "cancelled":
            raise errors.Conflict(
                f"batch {batch_id} has already ended "
                f"({states.batch_status(batch.status, started=True)})"
            )
        batch = await call.mgr.cancel_batch(
            call.principal, batch_id, body.reason, cancel_running=body.cancel_running,
            metering=call.metering(),
        )
    return respond(request, await batch_view(call, batch))
