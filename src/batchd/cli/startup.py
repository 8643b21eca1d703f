"""Starting ``batchd serve`` and ``batchd worker``: tasks imported from the working
directory, the database opened (created on PostgreSQL when missing) and migrated before
anything says it is serving; what cannot start is one line and exit code 1."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import typer
import uvicorn

from batchd.cli.common import EXIT_ERROR, say

if TYPE_CHECKING:
    from batchd.core.db import Database
    from batchd.settings import Settings
    from batchd.tasks.registry import TaskRegistry

EXIT_STARTUP = 3  # the app's own start-up failed (uvicorn's code for it)


def import_from_working_directory() -> None:
    """Task modules (BATCHD_TASKS) import from the working directory, as with uvicorn
    and celery: ``myproj.tasks`` finds ``./myproj/tasks.py`` without PYTHONPATH."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _cannot_start(message: str) -> NoReturn:
    say(f"batchd: {message}")
    raise typer.Exit(EXIT_ERROR)


def _guarded(build: Callable[[], Any]) -> Any:
    """``build()``; a task module that cannot be imported is one line and exit code 1."""
    from batchd.tasks.registry import TaskModuleError

    import_from_working_directory()
    try:
        return build()
    except TaskModuleError as exc:
        _cannot_start(str(exc))


async def open_database_or_exit(settings: Settings) -> Database:
    """The database of BATCHD_DATABASE_URL, opened and migrated (a PostgreSQL database
    that is missing is created if the role may); else one line and exit code 1."""
    from batchd.core.db import open_database
    from batchd.domain import errors

    store = open_database(settings.database_url, **settings.store_options())
    try:
        await store.open()
    except (errors.BatchdError, OSError) as exc:
        reason = exc.message if isinstance(exc, errors.BatchdError) else str(exc)
        with contextlib.suppress(Exception):
            await store.close()
        _cannot_start(f"cannot open the database (BATCHD_DATABASE_URL): {reason}")
    return store


async def _check_database(settings: Settings) -> None:
    store = await open_database_or_exit(settings)
    await store.close()


def settle_gc() -> None:
    """What start-up made (modules, the app, schemas) lives as long as the process: kept
    out of every collection (``gc.freeze``); and the youngest generation is collected
    after 50,000 net allocations, not 700. Measured on ``bench/openai_batch.py``: about a
    third less CPU a request (with 700, and still with 10,000, collections of the objects
    of requests in flight took a few milliseconds each, a hundred times a run)."""
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def serve(settings: Settings) -> None:
    """Run the API server (and its worker) until stopped; ``batchd serving on …`` is
    printed once it is ready: tasks loaded, database open and migrated."""
    from batchd.api.app import create_app

    app = _guarded(lambda: create_app(settings))
    # Opened once before the app starts, so that a database that cannot be used is said
    # at once, in one line (the app's own start would wait for its pool, then fail).
    asyncio.run(_check_database(settings))
    settle_gc()
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level="warning", timeout_graceful_shutdown=10)
    # Bound here so the message names the real port (BATCHD_PORT=0 lets the system pick).
    sock = config.bind_socket()
    server = ReadyServer(config, sock=sock, backend=settings.database_url.split("://")[0])
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(EXIT_STARTUP)


class ReadyServer(uvicorn.Server):
    """A uvicorn server that says where it serves once its app has started."""

    def __init__(self, config: uvicorn.Config, *, sock: socket.socket, backend: str) -> None:
        super().__init__(config)
        self.sock = sock
        self.backend = backend

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host, port = self.sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            say(f"batchd serving on http://{shown}:{port} ({self.backend})")


def load_registry(settings: Settings) -> TaskRegistry:
    from batchd.tasks.registry import load_tasks

    registry: TaskRegistry = _guarded(lambda: load_tasks(
        settings.task_modules(), examples=settings.load_example_tasks,
        entry_points=settings.load_entry_points))
    return registry


def run_worker(settings: Settings) -> None:
    """Run a standalone worker until SIGINT or SIGTERM."""
    registry = load_registry(settings)
    settle_gc()
    asyncio.run(_work(settings, registry))


async def _work(settings: Settings, registry: TaskRegistry) -> None:
    from batchd.core import fleet, scheduling
    from batchd.exec.local import LocalExecutor
    from batchd.exec.worker import Worker

    store = await open_database_or_exit(settings)
    executor = LocalExecutor(threads=settings.worker_threads,
                             processes=settings.worker_processes)
    w = Worker(store=store, registry=registry, executor=executor, settings=settings,
               retry_delay=scheduling.retry_delay_s)
    membership = fleet.Membership(store=store, registry=registry, settings=settings,
                                  role=fleet.WORKER, process_id=w.owner, sync=w.catalog.sync)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await w.catalog.sync()
    await membership.join()  # announced before it claims; logs what it lacks
    await w.start()
    say(f"batchd worker {w.owner} running ({len(registry.names())} tasks)")
    await stop.wait()
    await membership.leave()
    await w.stop()
    executor.close()
    await store.close()
