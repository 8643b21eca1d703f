"""The dashboard's other pages: tasks, workers, usage and quotas, the AI queue's jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from batchd.api import ingress
from batchd.api.deps import Manager
from batchd.api.ui.pages import common
from batchd.api.ui.render import page
from batchd.api.ui.session import Seen
from batchd.core import quotas, roles

router = APIRouter()
USAGE_MONTHS = 6


@router.get("/ui/tasks")
@ingress.public
async def tasks(who: Seen, mgr: Manager) -> Response:
    await mgr.sync_tasks()
    reg = mgr.registry
    rows = [t.describe(reg.versions(t.name)) for t in reg.all_latest()]
    return page("tasks.html", **common(who, "tasks", rows=rows))


@router.get("/ui/workers")
@ingress.public
async def workers(who: Seen, mgr: Manager) -> Response:
    live = await mgr.fleet.live()
    load = await mgr.dashboard.worker_load(who.principal)
    return page("workers.html", **common(who, "workers", rows=live, load=load,
                                          operator=roles.is_operator(who.principal),
                                          now=mgr.clock()))


def _months(now: float, n: int) -> list[str]:
    d = datetime.fromtimestamp(now, UTC)
    y, m = d.year, d.month
    out = []
    for _ in range(n):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return out


@router.get("/ui/usage")
@ingress.public
async def usage(who: Seen, mgr: Manager) -> Response:
    periods = _months(mgr.clock(), USAGE_MONTHS)
    used = await mgr.usage_by_period(who.principal, periods)
    limits = mgr.limits_for(who.principal)
    return page("usage.html", **common(who, "usage", periods=periods, used=used,
                                        limits=limits, unlimited=quotas.UNLIMITED))


@router.get("/ui/queue")
@ingress.public
async def queue(request: Request, who: Seen) -> Response:
    jq = request.app.state.job_queue
    jobs, counts = await jq.list(who.principal, limit=100)
    totals = await jq.totals(who.principal)
    return page("queue.html", **common(who, "queue", jobs=jobs, counts=counts,
                                        totals=totals))
