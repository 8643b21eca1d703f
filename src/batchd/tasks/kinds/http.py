"""The ``http`` kind: each run's arguments are POSTed (as JSON) to a URL.

``config``: ``{"url": "https://…", "method"?: "POST" | "PUT", "headers"?: {…},
"timeout_s"?: 30, "retries"?: 2}``. A 2xx answer is the run's output (its JSON, or
``{"text": …}`` when it is not JSON). Timeouts, connection errors, 408/425/429 and
5xx answers are retried by the engine (``retries`` more attempts, with the batch's
backoff, surviving restarts); any other status fails the run at once. The URL must
pass the outbound address policy (``BATCHD_OUTBOUND_ALLOW``) when the task is defined
over the API (:func:`check`) and again on every call, against the address connected to.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from batchd import netguard
from batchd.domain import errors
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.kinds import runtime
from batchd.tasks.kinds.base import config_of, retryable_status, task_def
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import TaskDef


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=4096)
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    retries: int = Field(default=2, ge=0, le=20)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            netguard.parse(value)  # the address: by check() and at every call
        except netguard.UnsafeUrl as exc:
            raise ValueError(exc.message) from None
        return value


class HttpCaller:
    """The handler of one http task; one connection pool per worker event loop."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, record: Any, ctx: TaskContext) -> Any:
        c = self.config
        try:
            target = await netguard.resolve(c.url, runtime.settings().outbound_policy())
        except netguard.Unresolvable as exc:  # DNS may answer on the next attempt
            raise RuntimeError(exc.message) from None
        except errors.InvalidInput as exc:
            raise RecordError(exc.message, code="unsafe_url") from None
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        response = await self._client.request(
            c.method, target.request_url(), content=orjson.dumps(record),
            headers={**target.headers(), "Content-Type": "application/json", **c.headers},
            extensions=target.extensions(), timeout=c.timeout_s,
        )
        return answer(response, c.url)


def answer(response: httpx.Response, url: str) -> Any:
    """A 2xx response's JSON; raises to retry (RuntimeError) or to fail (RecordError)."""
    status = response.status_code
    if retryable_status(status):
        raise RuntimeError(f"HTTP {status} from {url}")
    if not 200 <= status < 300:
        raise RecordError(f"HTTP {status} from {url}: {response.text[:500]}", code="http_error")
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {"text": response.text}


async def check(spec: TaskSpec) -> None:
    """Refuse a definition whose URL the outbound policy refuses now (InvalidInput)."""
    url = config_of(HttpConfig, spec).url
    refused = await netguard.refusals([url], runtime.settings().outbound_policy())
    if url in refused:
        message = f"config.url: {refused[url]}"
        raise netguard.UnsafeUrl(message, details=[
            {"loc": ["body", "config", "url"], "msg": refused[url], "type": "unsafe_url"}
        ])


def build(spec: TaskSpec) -> TaskDef:
    config: HttpConfig = config_of(HttpConfig, spec)
    return task_def(spec, handler=HttpCaller(config).__call__, mode="async",
                    max_attempts=config.retries + 1)
