"""The built-in task ``model_request``: one request of a ``/v1`` batch, sent to the model
upstream that serves its ``model`` (``BATCHD_UPSTREAMS``).

A record is ``{"custom_id", "url", "body"}`` (``url``: ``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings`` or ``/v1/messages``). The output is
``{"status_code", "request_id", "body"}``: the upstream's answer (translated back for an
Anthropic request sent to an OpenAI-compatible server). What the request itself gets
wrong (an unknown model, a 4xx from the upstream, a field that cannot be translated) fails
the record at once, with the answer kept in the error (:class:`UpstreamError`); a 429,
a 5xx, a timeout or a lost connection is retried by the engine with backoff, and a 429's
``Retry-After`` pauses the upstream for every process (:mod:`batchd.tasks.upstream.gate`).
Tokens come from the answer's ``usage``, the cost from ``BATCHD_LLM_PRICES`` (by the
model's name on the upstream); a record's estimate is its body at one token per
:data:`batchd.tasks.kinds.llm.BYTES_PER_TOKEN` bytes plus ``max_tokens``.
"""

from __future__ import annotations

from typing import Any

from batchd.domain.cost import CostModel
from batchd.tasks.registry import TaskDef
from batchd.tasks.upstream import calls
from batchd.tasks.upstream.calls import UpstreamError, estimate_tokens

NAME = "model_request"
VERSION = "1.0.0"
KIND = "upstream"


def estimate_usd(record: Any) -> float:
    body = record.get("body") if isinstance(record, dict) else None
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(model, str):
        return 0.0
    tokens_in, tokens_out = estimate_tokens(record)
    return calls.cost_usd(calls.upstream_model(model), tokens_in, tokens_out)


def task_def(*, max_attempts: int | None = None) -> TaskDef:
    """The task every ``/v1`` request runs as."""
    return TaskDef(
        name=NAME, version=VERSION, handler=calls.handle, mode="async", kind=KIND,
        description="One request of a /v1 batch (OpenAI Batch, Anthropic Message Batches), "
        "sent to the model upstream serving its model.",
        input_schema={"type": "object", "required": ["custom_id", "url", "body"]},
        cost=CostModel(per_record=estimate_usd), max_attempts=max_attempts,
    )


__all__ = ["KIND", "NAME", "VERSION", "UpstreamError", "estimate_tokens", "task_def"]
