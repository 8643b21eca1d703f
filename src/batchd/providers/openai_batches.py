"""OpenAI's Batch API through the official ``openai`` SDK.

A flush uploads a JSONL file (``purpose=batch``) of ``/v1/chat/completions`` requests
and creates a batch on it (``completion_window=24h``). Once the batch is over, its
output file (and error file) give one line per request, matched by ``custom_id``.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from batchd.core.jobs import ResultKind
from batchd.providers import prompts
from batchd.providers.base import (
    BatchProgress,
    Fetched,
    JobRequest,
    Provider,
    ProviderError,
    ProviderResult,
)
from batchd.tasks.registry import TaskRegistry

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


class OpenAIBatches(Provider):
    """Jobs as OpenAI batches of chat completions.

    Args:
        registry: the job types' tasks (to render requests).
        api_key: the OpenAI API key.
        base_url: another endpoint than OpenAI's (ends in ``/v1``).
        model: the model jobs run on, unless their task picks one.
        max_tokens: the answer's token cap (``max_completion_tokens``).
    """

    name = "openai"

    def __init__(
        self, *, registry: TaskRegistry, api_key: str | None, base_url: str | None = None,
        model: str = "gpt-4o-mini", max_tokens: int = 1024, timeout_s: float = 120.0,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ProviderError(
                "the openai provider needs the SDK: pip install 'batchd[providers]'"
            ) from exc
        self._sdk = openai
        self.client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=3
        )
        self.registry = registry
        self.model = self.chat_model = model
        self.max_tokens = max_tokens

    def _line(self, r: JobRequest) -> bytes:
        chat = prompts.render(self.registry, r.job_type, r.payload, model=self.chat_model,
                              max_tokens=self.max_tokens)
        messages = [{"role": "system", "content": chat.system}] if chat.system else []
        body = {"model": chat.model, "max_completion_tokens": chat.max_tokens,
                "messages": messages + chat.messages}
        return orjson.dumps({"custom_id": r.custom_id, "method": "POST", "url": ENDPOINT,
                             "body": body})

    async def submit(self, *, tenant_id: str, requests: list[JobRequest]) -> str:
        data = b"\n".join(self._line(r) for r in requests) + b"\n"
        try:
            file = await self.client.files.create(
                file=("batchd-jobs.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = await self.client.batches.create(
                input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h",
                metadata={"source": "batchd"},
            )
        except self._sdk.APIError as exc:
            raise ProviderError(f"OpenAI refused the batch: {exc}") from exc
        return batch.id

    async def fetch(self, batch_id: str, *, waiting: set[str]) -> Fetched:
        try:
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
        except self._sdk.APIError as exc:
            raise ProviderError(f"OpenAI: {exc}") from exc
        for custom_id in waiting - results.keys():
            results[custom_id] = _missing(custom_id, batch.status, batch.errors, ms, finished)
        return Fetched(progress=progress, results=list(results.values()))

    async def cancel(self, batch_id: str) -> None:
        try:
            await self.client.batches.cancel(batch_id)
        except self._sdk.APIError as exc:
            raise ProviderError(f"OpenAI could not cancel {batch_id}: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()


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
