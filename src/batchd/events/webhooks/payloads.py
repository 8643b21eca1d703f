"""Webhook bodies: each event type is rendered by the dialect that offers it.

A dialect registers a renderer for its event types with :func:`register` in a module
named in :data:`RENDERER_MODULES` (imported on first use, so a standalone worker
renders the same bodies as a server). A body is rendered afresh for every attempt
from the state the message announces, which is final, so every attempt sends the
same body.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import orjson

from batchd.domain.models import Batch, Item, iso
from batchd.domain.webhooks import WebhookMessage

Renderer = Callable[[WebhookMessage, Batch, Item | None], dict[str, Any]]

RENDERER_MODULES = ("batchd.api.native.webhooks", "batchd.api.taskruns.callbacks",
                    "batchd.api.parallel.callbacks")
_renderers: dict[str, Renderer] = {}
_loaded = False


def register(event: str) -> Callable[[Renderer], Renderer]:
    def decorate(fn: Renderer) -> Renderer:
        _renderers[event] = fn
        return fn

    return decorate


def renderer(event: str) -> Renderer:
    global _loaded
    if not _loaded:
        for module in RENDERER_MODULES:
            importlib.import_module(module)
        _loaded = True
    return _renderers.get(event, generic)


def generic(message: WebhookMessage, batch: Batch, item: Item | None) -> dict[str, Any]:
    """The body of an event type no dialect renders: what ended, and how."""
    data: dict[str, Any] = {"batch_id": batch.id, "status": batch.status}
    if item is not None:
        data = {"item_id": item.id, "batch_id": batch.id, "status": item.status,
                "error": item.error}
    return {"type": message.event, "timestamp": iso(message.created_at), "data": data}


def render(message: WebhookMessage, batch: Batch, item: Item | None) -> bytes:
    return orjson.dumps(renderer(message.event)(message, batch, item))
