"""``create_app(settings)``: the ASGI app with every dialect mounted."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from batchd import __version__
from batchd.api import aibatch, ingress, jsonbody, native, openapi, simulations, spark, taskruns
from batchd.api import errors as api_errors
from batchd.api import parallel as parallel_dialect
from batchd.api import ui as dashboard_ui
from batchd.api import v1 as v1_dialects
from batchd.api.responses import JsonResponse
from batchd.core import fleet, quotas, scheduling
from batchd.core.db import Database, open_database
from batchd.core.jobqueue import JobQueue
from batchd.core.manager import BatchManager
from batchd.core.services import Services
from batchd.domain import pricing
from batchd.exec.local import LocalExecutor
from batchd.exec.queue_loops import QueueLoops
from batchd.exec.worker import Worker
from batchd.metrics import Metrics
from batchd.providers import Providers
from batchd.settings import Settings
from batchd.tasks.catalog import TaskCatalog
from batchd.tasks.registry import load_tasks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Engine:
    """What one server process runs: the database, the worker, core's services."""

    store: Database
    catalog: TaskCatalog
    worker: Worker | None
    manager: BatchManager
    providers: Providers
    job_queue: JobQueue
    queue_loops: QueueLoops
    metrics: Metrics
    membership: fleet.Membership


def build_engine(settings: Settings, *, clock: Callable[[], float]) -> Engine:
    registry = load_tasks(
        settings.task_modules(), examples=settings.load_example_tasks,
        entry_points=settings.load_entry_points,
    )
    store = open_database(settings.database_url, **settings.store_options())
    catalog = TaskCatalog(store=store, registry=registry, settings=settings)
    metrics = Metrics()
    worker: Worker | None = None
    if settings.run_worker:
        worker = Worker(
            store=store, registry=registry,
            executor=LocalExecutor(threads=settings.worker_threads,
                                   processes=settings.worker_processes),
            settings=settings, metrics=metrics, clock=clock, catalog=catalog,
            retry_delay=scheduling.retry_delay_s,
        )
    membership = fleet.Membership(
        store=store, registry=registry, settings=settings, clock=clock, sync=catalog.sync,
        role=fleet.SERVER_AND_WORKER if worker else fleet.SERVER,
        process_id=worker.owner if worker else None,
    )
    manager = BatchManager(
        store=store, registry=registry, on_new_work=worker.wake if worker else None,
        ingest_flush_items=settings.ingest_flush_items,
        max_items_per_request=settings.max_items_per_request, clock=clock,
        tiers=quotas.tier_table(settings.tier_limits), catalog=catalog,
        key_cache_s=settings.key_cache_s,
    )
    providers = Providers(settings=settings, manager=manager)
    job_queue = JobQueue(
        store=store, registry=registry, providers=providers,
        prices=pricing.price_table(settings.aibatch_prices), clock=clock,
        submit_timeout_s=settings.aibatch_submit_timeout_s,
    )
    return Engine(store=store, catalog=catalog, worker=worker, manager=manager,
                  providers=providers, job_queue=job_queue,
                  queue_loops=QueueLoops(queue=job_queue, settings=settings), metrics=metrics,
                  membership=membership)


@asynccontextmanager
async def running(engine: Engine, settings: Settings) -> AsyncIterator[None]:
    """Open the database, make sure there is an admin key, run the worker and the queue's
    loops; stop them all in reverse."""
    e = engine
    await e.store.open()
    await e.catalog.sync()
    new_key = await e.manager.bootstrap_admin(settings.admin_key)
    if new_key:
        print(f"batchd: created the admin key (shown once, keep it): {new_key}",
              file=sys.stdout, flush=True)
    await e.membership.join()  # announced before it claims; logs what it lacks
    if e.worker is not None:
        await e.worker.start()
    e.queue_loops.start()
    try:
        yield
    finally:
        await e.membership.leave()
        await e.queue_loops.stop()
        if e.worker is not None:
            await e.worker.stop()
            e.worker.executor.close()
        await e.providers.close()
        await e.store.close()


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], float] = time.time
) -> FastAPI:
    """Build the app; the store opens and the worker starts when the app starts.

    ``clock`` (seconds since the epoch) is the time of the manager and the worker;
    tests inject one to move across billing periods.
    """
    settings = settings or Settings()
    engine = build_engine(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(engine, settings), v1.running():
            yield

    app = FastAPI(
        title="batchd", version=__version__, lifespan=lifespan,
        default_response_class=JsonResponse,
        description="Self-hosted batch processing: one engine, several wire dialects.",
    )
    app.state.settings = settings
    app.state.manager = engine.manager
    app.state.worker = engine.worker
    app.state.metrics = engine.metrics
    app.state.job_queue = engine.job_queue
    app.state.services = Services(store=engine.store, catalog=engine.catalog, clock=clock)
    api_errors.install(app)
    # First: routes are matched in order, and the queue's enqueue is the hot path.
    app.include_router(aibatch.router)
    app.include_router(native.router)
    app.include_router(spark.router)
    app.include_router(spark.publish_router)
    app.include_router(simulations.router)
    app.include_router(taskruns.router)
    v1 = v1_dialects.install(app, store=engine.store, manager=engine.manager,
                             settings=settings, clock=clock)
    parallel_dialect.install(app, manager=engine.manager, settings=settings)
    ops = _ops_routes(app, engine)
    dashboard = dashboard_ui.install(app)  # /ui, and / redirecting there
    jsonbody.check_routes(app)
    dialects = {endpoint: dialect
                for routers, dialect in (((aibatch.router,), aibatch.DIALECT),
                                         ((native.router, ops, spark.publish_router),
                                          native.DIALECT),
                                         ((spark.router,), spark.DIALECT),
                                         ((simulations.router,), simulations.DIALECT),
                                         ((taskruns.router,), taskruns.DIALECT))
                for endpoint in ingress.endpoints(*routers)}
    dialects.update(v1.dialects())
    dialects.update(dict.fromkeys(ingress.endpoints(parallel_dialect.router),
                                  parallel_dialect.DIALECT))
    dialects.update(dict.fromkeys(ingress.endpoints(dashboard), dashboard_ui.DIALECT))
    table = ingress.install(app, dialects=dialects, fallback=native.DIALECT,
                            manager=engine.manager, settings=settings)
    openapi.install(app, table)
    return app


def _ops_routes(app: FastAPI, engine: Engine) -> APIRouter:
    """``/healthz`` and ``/metrics``: no key."""
    ops = APIRouter(tags=["ops"])

    @ops.get("/healthz")
    @ingress.public
    async def healthz() -> dict[str, Any]:
        await engine.store.ping()
        return {"status": "ok", "version": __version__, "worker": engine.worker is not None}

    @ops.get("/metrics", response_class=Response, responses={
        200: {"description": "Prometheus metrics", "content": {CONTENT_TYPE_LATEST: {}}}})
    @ingress.public
    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(engine.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    app.include_router(ops)
    return ops
