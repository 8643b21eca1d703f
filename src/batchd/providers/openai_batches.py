"""OpenAI's Batch API through the official ``openai`` SDK.

A flush uploads a JSONL file (``purpose=batch``) of ``/v1/chat/completions`` requests
and creates a batch on it (``completion_window=24h``). Once the batch is over, its
output file (and error file) give one line per request, matched by ``custom_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson

from batchd.core.jobs import ResultKind
from batchd.providers import prompts
from batchd.providers.base import BatchProgress, Fetched, JobRequest, ProviderResult
from batchd.providers.sdk import SdkProvider

if TYPE_CHECKING:
    from openai import AsyncOpenAI

ENDPOINT: Final = "/v1/chat/completions"
PROGRESS = {
    "validating": BatchProgress.IN_PROGRESS,
    "in_progress": BatchProgress.IN_PROGRESS,
    "finalizing": BatchProgress.IN_PROGRESS,
    "cancelling": BatchProgress.CANCELING,
}
# What the requests a finished batch has no line for became, by the batch's status.
MISSING = {
    "expired": ResultKind.EXPIRED,
    "cancelled": ResultKind.CANCELED,
}


class OpenAIBatches(SdkProvider):
    """Jobs as OpenAI batches of chat completions (arguments: :class:`SdkProvider`'s;
    ``base_url`` ends in ``/v1``, ``max_tokens`` is ``max_completion_tokens``)."""

    name = "openai"
    sdk = "openai"
    client_class = "AsyncOpenAI"
    default_model = "gpt-4o-mini"
    client: AsyncOpenAI

    def _line(self, r: JobRequest) -> bytes:
        chat = self.chat(r)
        messages = [{"role": "system", "content": chat.system}] if chat.system else []
        body = {"model": chat.model, "max_completion_tokens": chat.max_tokens,
                "messages": messages + chat.messages}
        return orjson.dumps({"custom_id": r.custom_id, "method": "POST", "url": ENDPOINT,
                             "body": body})

    async def submit(self, *, tenant_id: str, requests: list[JobRequest]) -> str:
        data = b"\n".join(self._line(r) for r in requests) + b"\n"
        with self.calling("OpenAI refused the batch"):
            file = await self.client.files.create(
                file=("batchd-jobs.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = await self.client.batches.create(
                input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h",
                metadata={"source": "batchd"},
            )
        return batch.id

    async def fetch(self, batch_id: str, *, waiting: set[str]) -> Fetched:
        with self.calling("OpenAI"):
            batch = await self.client.batches.retrieve(batch_id)
            progress = PROGRESS.get(batch.status, BatchProgress.ENDED)
            if progress != BatchProgress.ENDED:
                return Fetched(progress=progress)
            finished = float(next(
                (t for t in (batch.completed_at, batch.failed_at, batch.expired_at,
                             batch.cancelled_at) if t), batch.created_at
            ))
            ms = round((finished - batch.created_at) * 1000)
            results: dict[str, ProviderResult] = {}
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await self.client.files.content(file_id)
                    for raw in content.content.splitlines():
                        line = orjson.loads(raw) if raw.strip() else None
                        if line and line.get("custom_id") in waiting:
                            results[line["custom_id"]] = _result(line, ms, finished)
        for custom_id in waiting - results.keys():
            results[custom_id] = _missing(custom_id, batch.status, batch.errors, ms, finished)
        return Fetched(progress=progress, results=list(results.values()))

    async def cancel(self, batch_id: str) -> None:
        with self.calling(f"OpenAI could not cancel {batch_id}"):
            await self.client.batches.cancel(batch_id)


def _result(line: dict[str, Any], ms: int, finished: float) -> ProviderResult:
    out = ProviderResult(custom_id=line["custom_id"], kind=ResultKind.ERRORED,
                         processing_ms=ms, finished_at=finished)
    response = line.get("response") or {}
    body = response.get("body") or {}
    if line.get("error") or response.get("status_code") != 200:
        err = line.get("error") or body.get("error") or {}
        out.error = f"{err.get('code') or err.get('type') or 'error'}: {err.get('message', '')}"
        return out
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = body.get("usage") or {}
    out.kind, out.model = ResultKind.SUCCEEDED, body.get("model")
    out.output = prompts.result_of(message.get("content") or "", model=body.get("model"),
                                   stop_reason=choice.get("finish_reason"))
    out.tokens_in = int(usage.get("prompt_tokens", 0))
    out.tokens_out = int(usage.get("completion_tokens", 0))
    return out


def _missing(custom_id: str, status: str, batch_errors: Any, ms: int,
             finished: float) -> ProviderResult:
    kind = MISSING.get(status, ResultKind.ERRORED)
    reason = f"the batch {status} without a result for this request"
    if status == "failed" and batch_errors is not None and batch_errors.data:
        reason = "; ".join(f"{e.code}: {e.message}" for e in batch_errors.data)
    return ProviderResult(custom_id=custom_id, kind=kind, error=reason, processing_ms=ms,
                          finished_at=finished)
