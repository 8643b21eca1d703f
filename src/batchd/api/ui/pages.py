"""The dashboard's batch pages: the list, a batch (live), its items, one item, results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from batchd.api import ingress, times
from batchd.api.deps import Manager
from batchd.api.native.schemas import batch_json
from batchd.api.ui.render import page
from batchd.api.ui.session import Seen
from batchd.core.dashboard import BatchFilter, chart_points
from batchd.core.manager import BatchManager
from batchd.domain import errors, states
from batchd.domain.models import DIALECTS, Batch, Principal
from batchd.events.sse import sse_stream
from batchd.export import FORMATS, exporter_for

router = APIRouter()

BATCH_STATUSES = [s.value for s in states.BatchStatus]
ITEM_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]
PAGE = 50
Text = Annotated[str | None, Query(max_length=500)]


def _hx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def common(who: Seen, nav: str, **context: Any) -> dict[str, Any]:
    return {"me": who.principal, "csrf": who.csrf, "nav": nav, **context}


@router.get("/ui/batches")
@ingress.public
async def batches(
    request: Request, who: Seen, mgr: Manager, status: Text = None, task: Text = None,
    dialect: Text = None, since: Text = None, until: Text = None, q: Text = None,
    tenant: Text = None, cursor: Text = None,
) -> Response:
    f = BatchFilter(status=status or None, task=task or None, dialect=dialect or None,
                    since=times.epoch(since or None, "since"),
                    until=times.epoch(until or None, "until"), search=q,
                    tenant=tenant or None)
    for name, value, known in (("status", f.status, BATCH_STATUSES),
                               ("dialect", f.dialect, DIALECTS)):
        if value is not None and value not in known:
            raise errors.InvalidInput(f"unknown {name} {value!r}", details={"field": name})
    rows, nxt = await mgr.dashboard.batches(who.principal, f, cursor=cursor, limit=PAGE)
    args = {"status": status or "", "task": task or "", "dialect": dialect or "",
            "since": since or "", "until": until or "", "q": q or "", "tenant": tenant or ""}
    context = common(who, "batches", rows=rows, next_cursor=nxt, args=args,
                      statuses=BATCH_STATUSES, dialects=DIALECTS, now=mgr.clock(),
                      tenants=await mgr.dashboard.tenants(who.principal),
                      tasks=sorted({t.name for t in mgr.registry.all_latest()}))
    if _hx(request) and cursor:
        return page("_batch_rows.html", **context)
    return page("batches.html", **context)


@router.get("/ui/batches/{batch_id}")
@ingress.public
async def batch(batch_id: str, who: Seen, mgr: Manager, did: Text = None,
                n: Annotated[int | None, Query()] = None) -> Response:
    b = await mgr.get_batch(who.principal, batch_id)
    hooks, _ = await mgr.webhook_messages(who.principal, batch_id=batch_id, status=None,
                                          cursor=None, limit=20)
    now = mgr.clock()
    return page("batch.html", **common(
        who, "batches", view=batch_json(b, now=now), hooks=hooks, formats=list(FORMATS),
        did=did, n=n, warnings=await mgr.batch_warnings(b), now=now,
        **await _chart(mgr, b),
    ))


async def _chart(mgr: BatchManager, b: Batch) -> dict[str, Any]:
    chart = await mgr.dashboard.chart(b)
    return {"b": b, "chart": chart, "plot": chart_points(chart), "live": not b.is_terminal}


@router.get("/ui/batches/{batch_id}/chart")
@ingress.public
async def chart(batch_id: str, who: Seen, mgr: Manager) -> Response:
    """The batch's chart alone: the batch page polls it while the batch runs."""
    b = await mgr.get_batch(who.principal, batch_id)
    return page("_chart.html", **common(who, "batches", **await _chart(mgr, b)))


@router.get("/ui/batches/{batch_id}/events")
@ingress.public
async def events(batch_id: str, who: Seen, mgr: Manager) -> Response:
    """The batch's progress as server-sent events (as /api/batches/{id}/events)."""
    await mgr.get_batch(who.principal, batch_id)
    return StreamingResponse(
        sse_stream(_snapshots(mgr, who.principal, batch_id)), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _snapshots(mgr: BatchManager, caller: Principal,
                     batch_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    last = None
    async for b in mgr.watch(caller, batch_id):
        last = b
        yield "progress", _live(batch_json(b, now=mgr.clock()))
    if last is not None:
        yield "done", _live(batch_json(last, now=mgr.clock()))


def _live(view: dict[str, Any]) -> dict[str, Any]:
    c = view["counts"]
    view["done"] = c["succeeded"] + c["failed"] + c["cancelled"]
    return view


@router.get("/ui/batches/{batch_id}/results")
@ingress.public
async def results(batch_id: str, who: Seen, mgr: Manager,
                  format: Annotated[str, Query(max_length=20)] = "jsonl") -> Response:
    exporter = exporter_for(format)
    await mgr.get_batch(who.principal, batch_id)
    return StreamingResponse(
        exporter.stream(lambda: mgr.iter_results(who.principal, batch_id)),
        media_type=exporter.media_type,
        headers={"Content-Disposition":
                 f'attachment; filename="{batch_id}.{exporter.extension}"'},
    )


@router.get("/ui/batches/{batch_id}/items")
@ingress.public
async def items(request: Request, batch_id: str, who: Seen, mgr: Manager,
                status: Text = None, error: Text = None, cursor: Text = None) -> Response:
    if status and status not in ITEM_STATUSES:
        raise errors.InvalidInput(f"unknown status {status!r}", details={"field": "status"})
    b, rows, nxt = await mgr.dashboard.items(who.principal, batch_id, status=status or None,
                                             error_text=error, cursor=cursor, limit=PAGE)
    context = common(who, "batches", b=b, rows=rows, next_cursor=nxt,
                      args={"status": status or "", "error": error or ""},
                      statuses=ITEM_STATUSES, now=mgr.clock())
    if _hx(request) and cursor:
        return page("_item_rows.html", **context)
    return page("items.html", **context)


@router.get("/ui/batches/{batch_id}/items/{item_id}")
@ingress.public
async def item(batch_id: str, item_id: str, who: Seen, mgr: Manager) -> Response:
    b = await mgr.get_batch(who.principal, batch_id)
    i = await mgr.get_item(who.principal, batch_id, item_id)
    tries = await mgr.dashboard.attempts(i)
    return page("item.html", **common(who, "batches", b=b, i=i, tries=tries))
