"""The ``llm`` kind: a prompt template sent to an OpenAI-compatible chat-completions API.

``config``: ``{"prompt": "Describe {company} in one line.", "system"?: "…",
"model"?: "…", "temperature"?: 0.2, "max_tokens"?: 256, "json_output"?: false}``.
``{name}`` in the prompt is the run's argument ``name`` (``{a.b}`` a nested one;
``{{`` and ``}}`` are braces; values that are not text are inserted as JSON). The
model is the run's runner's ``model``, else the task's, else ``BATCHD_LLM_MODEL``.
The request goes to ``BATCHD_LLM_BASE_URL`` + ``/chat/completions`` with
``BATCHD_LLM_API_KEY``. The output is ``{"content": …}``, or with ``json_output`` the
answer parsed as JSON. Tokens come from the response's ``usage``; the cost from the
price table (:mod:`batchd.domain.pricing`: its standard, one-call-at-a-time rates,
with ``BATCHD_LLM_PRICES`` merged over them; 0 for a model without a price). The
endpoint passes the outbound address policy (``BATCHD_OUTBOUND_ALLOW``) when settings
are loaded and on every call, against the address connected to.

Unless the task (or a runner) names a ``cost`` of its own, a record's estimate — what
budgets reserve and admission checks — is its rendered prompt and system message at
one token per :data:`BYTES_PER_TOKEN` bytes and ``max_tokens`` of answer
(:data:`DEFAULT_ANSWER_TOKENS` without it), at the same prices.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from batchd import netguard
from batchd.domain import errors, pricing
from batchd.domain.cost import CostModel
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.kinds import runtime
from batchd.tasks.kinds.base import config_of, retryable_status, task_def
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import TaskDef

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
# Estimates: cautious on the prompt (English runs near 4 bytes a token, other scripts and
# code fewer), and the answer at its cap, so a budget's reservations bound what it pays.
BYTES_PER_TOKEN = 3
MESSAGE_TOKENS = 8  # a message's own overhead (role, separators)
DEFAULT_ANSWER_TOKENS = 1024  # the answer's estimate when the task sets no max_tokens


class LlmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=100_000)
    system: str | None = Field(default=None, max_length=100_000)
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    json_output: bool = False


def render(template: str, arguments: Any) -> str:
    """Fill ``{name}`` placeholders from ``arguments``; raises RecordError on a missing one."""

    def value(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        found: Any = arguments
        for part in match.group(1).split("."):
            if not isinstance(found, dict) or part not in found:
                raise RecordError(f"the prompt needs the argument {match.group(1)!r}",
                                  code="invalid_input")
            found = found[part]
        return found if isinstance(found, str) else orjson.dumps(found).decode()

    return PLACEHOLDER.sub(value, template)


@functools.lru_cache(maxsize=8)
def _table(prices_json: bytes) -> dict[str, pricing.Price]:
    return pricing.price_table(orjson.loads(prices_json))


def price_of(prices: dict[str, dict[str, float]], model: str) -> pricing.Price | None:
    """``model``'s row of the price table with ``prices`` (BATCHD_LLM_PRICES) merged in."""
    return pricing.price_of(_table(orjson.dumps(prices, option=orjson.OPT_SORT_KEYS)), model)


def cost_usd(prices: dict[str, dict[str, float]], model: str, tokens_in: int,
             tokens_out: int) -> float:
    """What ``tokens_in`` and ``tokens_out`` of ``model`` cost at the standard rate."""
    price = price_of(prices, model)
    return 0.0 if price is None else price.standard_usd(tokens_in, tokens_out)


def model_for(runner_model: str | None, config: LlmConfig) -> str:
    """The model a call asks for: the runner's, else the task's, else BATCHD_LLM_MODEL."""
    return runner_model or config.model or runtime.settings().llm_model


def prompt_tokens(text: str) -> int:
    return MESSAGE_TOKENS + math.ceil(len(text.encode()) / BYTES_PER_TOKEN)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Estimate:
    """A record's estimated cost with the model of ``runner_model`` (see the module)."""

    config: LlmConfig
    runner_model: str | None = None

    def __call__(self, record: Any) -> float:
        c = self.config
        try:
            prompt = render(c.prompt, record)
        except RecordError:  # the run will fail without a call; price the template
            prompt = c.prompt
        tokens_in = prompt_tokens(prompt) + (prompt_tokens(c.system) if c.system else 0)
        answer = c.max_tokens or DEFAULT_ANSWER_TOKENS
        return cost_usd(runtime.settings().llm_prices, model_for(self.runner_model, c),
                        tokens_in, answer)


class LlmCaller:
    def __init__(self, config: LlmConfig, spec: TaskSpec) -> None:
        self.config = config
        self.models = {r.name: r.model for r in spec.runners if r.model}
        self._client: httpx.AsyncClient | None = None

    def request(self, record: Any, model: str) -> dict[str, Any]:
        c = self.config
        messages = [{"role": "system", "content": c.system}] if c.system else []
        messages.append({"role": "user", "content": render(c.prompt, record)})
        body: dict[str, Any] = {"model": model, "messages": messages}
        if c.temperature is not None:
            body["temperature"] = c.temperature
        if c.max_tokens is not None:
            body["max_tokens"] = c.max_tokens
        if c.json_output:
            body["response_format"] = {"type": "json_object"}
        return body

    async def __call__(self, record: Any, ctx: TaskContext) -> Any:
        s = runtime.settings()
        model = model_for(self.models.get(ctx.runner or ""), self.config)
        headers = {"Authorization": f"Bearer {s.llm_api_key}"} if s.llm_api_key else {}
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        url = s.llm_base_url.rstrip("/") + "/chat/completions"
        try:
            target = await netguard.resolve(url, s.outbound_policy())
        except netguard.Unresolvable as exc:  # DNS may answer on the next attempt
            raise RuntimeError(f"the LLM endpoint: {exc.message}") from None
        except errors.InvalidInput as exc:
            raise RecordError(f"the LLM endpoint: {exc.message}", code="unsafe_url") from None
        response = await self._client.post(
            target.request_url(), content=orjson.dumps(self.request(record, model)),
            headers={**target.headers(), "Content-Type": "application/json", **headers},
            extensions=target.extensions(), timeout=s.llm_timeout_s,
        )
        if retryable_status(response.status_code):
            raise RuntimeError(f"HTTP {response.status_code} from the LLM endpoint")
        if response.status_code >= 300:
            raise RecordError(f"HTTP {response.status_code} from the LLM endpoint: "
                              f"{response.text[:500]}", code="llm_error")
        return self.output(response.content, model, ctx, s.llm_prices)

    def output(self, raw: bytes, model: str, ctx: TaskContext,
               prices: dict[str, dict[str, float]]) -> Any:
        try:
            data = orjson.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise RecordError("the LLM endpoint's answer has no choices[0].message.content",
                              code="llm_error") from None
        usage = data.get("usage") or {}
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        ctx.report_usage(tokens_in=tokens_in, tokens_out=tokens_out,
                         cost_usd=cost_usd(prices, model, tokens_in, tokens_out))
        if not self.config.json_output:
            return {"content": content}
        try:
            return orjson.loads(content)
        except (orjson.JSONDecodeError, TypeError):
            raise RecordError("the model's answer is not JSON", code="invalid_output") from None


def build(spec: TaskSpec) -> TaskDef:
    config: LlmConfig = config_of(LlmConfig, spec)
    task = task_def(spec, handler=LlmCaller(config, spec).__call__, mode="async")
    if not (spec.cost.per_record_usd or spec.cost.per_item_usd):
        # Priced by tokens unless the task names a price (a stored definition holds a
        # zero cost when none was given); a runner with a cost of its own keeps it.
        task.cost = CostModel(per_record=Estimate(config))
        task.runners = {
            name: r if r.cost is not None
            else dataclasses.replace(r, cost=CostModel(per_record=Estimate(config, r.model)))
            for name, r in task.runners.items()
        }
    return task
