"""Anthropic Message Batches through the official ``anthropic`` SDK.

A flush becomes one Message Batch: each job a ``{custom_id, params}`` request
rendered by :mod:`batchd.providers.prompts`. Results come once the batch has ended,
from its ``results_url`` (JSONL, any order, matched by ``custom_id``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchd.core.jobs import ResultKind
from batchd.providers import prompts
from batchd.providers.base import BatchProgress, Fetched, JobRequest, ProviderResult
from batchd.providers.sdk import SdkProvider

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse


class AnthropicBatches(SdkProvider):
    """Jobs as Anthropic Message Batches (arguments: :class:`SdkProvider`'s)."""

    name = "anthropic"
    sdk = "anthropic"
    client_class = "AsyncAnthropic"
    default_model = "claude-haiku-4-5"
    client: AsyncAnthropic

    def _params(self, r: JobRequest) -> dict[str, Any]:
        chat = self.chat(r)
        params: dict[str, Any] = {"model": chat.model, "max_tokens": chat.max_tokens,
                                  "messages": chat.messages}
        if chat.system:
            params["system"] = chat.system
        return params

    async def submit(self, *, tenant_id: str, requests: list[JobRequest]) -> str:
        body = [{"custom_id": r.custom_id, "params": self._params(r)} for r in requests]
        with self.calling("Anthropic refused the batch"):
            batch = await self.client.messages.batches.create(requests=body)  # type: ignore[arg-type]
        return batch.id

    async def fetch(self, batch_id: str, *, waiting: set[str]) -> Fetched:
        with self.calling("Anthropic"):
            batch = await self.client.messages.batches.retrieve(batch_id)
            progress = BatchProgress(batch.processing_status)
            if progress != BatchProgress.ENDED:
                return Fetched(progress=progress)
            results = []
            async for line in await self.client.messages.batches.results(batch_id):
                if line.custom_id in waiting:
                    results.append(_result(line, batch))
        return Fetched(progress=progress, results=results)

    async def cancel(self, batch_id: str) -> None:
        with self.calling(f"Anthropic could not cancel {batch_id}"):
            await self.client.messages.batches.cancel(batch_id)


def _ms(start: datetime | None, end: datetime | None) -> int:
    return round((end - start).total_seconds() * 1000) if start and end else 0


def _result(line: MessageBatchIndividualResponse, batch: MessageBatch) -> ProviderResult:
    r = line.result
    out = ProviderResult(
        custom_id=line.custom_id, kind=ResultKind.EXPIRED,
        processing_ms=_ms(batch.created_at, batch.ended_at),
        finished_at=batch.ended_at.timestamp() if batch.ended_at else None,
    )
    if r.type == "succeeded":
        message = r.message
        text = "".join(getattr(b, "text", "") for b in message.content if b.type == "text")
        out.kind, out.model = ResultKind.SUCCEEDED, message.model
        out.output = prompts.result_of(text, model=message.model,
                                       stop_reason=message.stop_reason)
        out.tokens_in = message.usage.input_tokens
        out.tokens_out = message.usage.output_tokens
    elif r.type == "errored":
        err = r.error.error
        out.kind = ResultKind.ERRORED
        out.error = f"{getattr(err, 'type', 'error')}: {getattr(err, 'message', '')}"
    else:
        out.kind = ResultKind.CANCELED if r.type == "canceled" else ResultKind.EXPIRED
        out.error = f"the request was {r.type}"
    return out
