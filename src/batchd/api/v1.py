"""The ``/v1`` batch dialects (OpenAI Batch + Files, Anthropic Message Batches) mounted on
the app: their routers, services and the loop that finalizes ended OpenAI batches."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from batchd.api import anthropic, ingress, openai
from batchd.api.openai import wire
from batchd.core.db import Database
from batchd.core.files import Files
from batchd.core.manager import BatchManager
from batchd.core.v1batches import V1Batches
from batchd.core.v1finalize import Finalizer
from batchd.settings import Settings
from batchd.tasks.upstream import calls


class V1Mount:
    """The routers, services and finalizer of the /v1 dialects on one app."""

    def __init__(self, app: FastAPI, *, store: Database, manager: BatchManager,
                 settings: Settings, clock: Callable[[], float]) -> None:
        app.state.v1_files = Files(store=store, clock=clock, max_bytes=settings.v1_file_max_bytes,
                                   expiry_s=settings.v1_file_expiry_s)
        app.state.v1_batches = V1Batches(store=store, manager=manager, settings=settings,
                                         clock=clock)
        self.finalizer = Finalizer(store=store, render=wire.result_line, clock=clock,
                                   interval_s=settings.v1_finalize_interval_s,
                                   staging_ttl_s=settings.staging_ttl_s,
                                   files=app.state.v1_files)
        app.include_router(openai.router)
        app.include_router(anthropic.router)

    def dialects(self) -> dict[Callable[..., Any], ingress.Dialect]:
        """Each endpoint's dialect, for the ingress."""
        found: dict[Callable[..., Any], ingress.Dialect] = {}
        for router, dialect in ((openai.router, openai.DIALECT),
                                (anthropic.router, anthropic.DIALECT)):
            found.update(dict.fromkeys(ingress.endpoints(router), dialect))
        return found

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self.finalizer.start()
        try:
            yield
        finally:
            await self.finalizer.stop()
            await calls.aclose()


def install(app: FastAPI, *, store: Database, manager: BatchManager, settings: Settings,
            clock: Callable[[], float]) -> V1Mount:
    return V1Mount(app, store=store, manager=manager, settings=settings, clock=clock)
