"""How a job becomes a chat request for an LLM provider, and its answer a job result.

A job type is a task. By default its request is the task's description as the
system prompt and the payload, as JSON, as the user's message; a task kind may
register its own renderer (:func:`register`) — an LLM task kind renders its prompt
template and picks its own model this way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchd.domain import errors
from batchd.tasks.registry import TaskDef, TaskRegistry


@dataclass(slots=True)
class ChatRequest:
    """A provider-neutral chat request: one system prompt, user/assistant messages."""

    model: str
    max_tokens: int
    system: str | None
    messages: list[dict[str, str]] = field(default_factory=list)


log = logging.getLogger(__name__)
Renderer = Callable[[TaskDef, Any, ChatRequest], ChatRequest]
_RENDERERS: dict[str, Renderer] = {}


def register(kind: str, renderer: Renderer) -> None:
    """Render jobs whose task is of ``kind`` with ``renderer(task, payload, default)``,
    which returns the request to send (``default`` is the generic one, to adjust)."""
    _RENDERERS[kind] = renderer


def default_request(task: TaskDef, payload: Any, *, model: str, max_tokens: int) -> ChatRequest:
    about = task.description.strip() or f"the job type {task.name!r}"
    system = (
        f"You process batch jobs of type {task.name!r}: {about}\n"
        "The user's message is the job's payload as JSON. Answer with a JSON object."
    )
    user = orjson.dumps(payload).decode()
    return ChatRequest(model=model, max_tokens=max_tokens, system=system,
                       messages=[{"role": "user", "content": user}])


def render(
    registry: TaskRegistry, job_type: str, payload: Any, *, model: str, max_tokens: int
) -> ChatRequest:
    """The chat request of one job (its task's renderer, or the default)."""
    try:
        task = registry.get(job_type)
    except errors.NotFound:
        raise errors.UnknownTask(f"job type {job_type!r} is not registered") from None
    request = default_request(task, payload, model=model, max_tokens=max_tokens)
    renderer = _RENDERERS.get(task.kind)
    return renderer(task, payload, request) if renderer is not None else request


def result_of(text: str, *, model: str | None, stop_reason: str | None) -> dict[str, Any]:
    """A job's result from a model's answer: the text, and its JSON when it is JSON."""
    result: dict[str, Any] = {"text": text, "model": model, "stop_reason": stop_reason}
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        with contextlib.suppress(orjson.JSONDecodeError):
            result["data"] = orjson.loads(stripped)
    return result


def llm_task_request(task: TaskDef, payload: Any, default: ChatRequest) -> ChatRequest:
    """An ``llm`` task's own request: its prompt template filled from the payload, its
    system prompt, and its model and ``max_tokens`` when it names them."""
    config = getattr(getattr(task.handler, "__self__", None), "config", None)
    prompt = getattr(config, "prompt", None)
    if not isinstance(prompt, str):
        return default
    try:
        from batchd.tasks.kinds.llm import render as fill

        user = fill(prompt, payload)
    except Exception as exc:  # a payload the template cannot take: send it as it is
        log.warning("job of %s: prompt template not filled (%s); sending the payload",
                    task.name, exc)
        return default
    return ChatRequest(
        model=getattr(config, "model", None) or default.model,
        max_tokens=getattr(config, "max_tokens", None) or default.max_tokens,
        system=getattr(config, "system", None),
        messages=[{"role": "user", "content": user}],
    )


register("llm", llm_task_request)
