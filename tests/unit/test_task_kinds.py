"""Task kinds: definitions, prompt templates, LLM costs, HTTP answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from batchd.domain import errors
from batchd.tasks import kinds
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.kinds import http, llm
from batchd.tasks.registry import TaskRegistry


def test_kinds_define_checks_and_builds() -> None:
    registry = TaskRegistry()
    task = kinds.define({"name": "shout", "kind": "http", "runners": [{"name": "fast"}],
                         "cost": {"per_record_usd": 0.5},
                         "config": {"url": "https://example.com/x", "retries": 4}},
                        registry=registry)
    assert registry.get("shout") is task
    assert (task.kind, task.mode, task.max_attempts) == ("http", "async", 5)
    assert task.cost_for("fast").per_record_usd == 0.5
    with pytest.raises(errors.InvalidInput) as caught:
        kinds.define({"name": "x", "kind": "http", "config": {"url": "file:///etc"}})
    assert "url" in caught.value.message
    with pytest.raises(errors.InvalidInput) as caught:
        kinds.define({"name": "x", "kind": "llm", "config": {}})
    assert caught.value.details[0]["loc"] == ["body", "config", "prompt"]
    with pytest.raises(errors.InvalidInput):
        kinds.define({"name": "x", "kind": "bash", "config": {}})
    with pytest.raises(errors.InvalidInput):
        kinds.define({"name": "x", "kind": "llm", "input_schema": {"type": "nope"},
                      "config": {"prompt": "p"}})


def test_llm_prompt_template() -> None:
    args = {"company": "Acme", "meta": {"size": 3, "tags": ["a"]}}
    assert llm.render("{company} has {meta.size} ({meta.tags}) {{x}}", args) == \
        'Acme has 3 (["a"]) {x}'
    with pytest.raises(RecordError):
        llm.render("{missing}", args)
    with pytest.raises(RecordError):  # a lookup in the arguments only, never an attribute
        llm.render("{company.__class__}", {"company": "x"})


def test_llm_cost_from_the_price_table() -> None:
    prices = {"m": {"input": 2.0, "output": 8.0}}
    assert llm.cost_usd(prices, "m", 1_000_000, 500_000) == pytest.approx(6.0)
    assert llm.cost_usd(prices, "unknown", 10, 10) == 0.0


def test_llm_output_reports_usage() -> None:
    spec = kinds.parse({"name": "s", "kind": "llm", "config": {"prompt": "p"}})
    caller = llm.LlmCaller(llm.LlmConfig(prompt="p"), spec)
    ctx = TaskContext(item_id="itm_1", batch_id="bat_1", attempt=1)
    raw = (b'{"choices": [{"message": {"content": "hello"}}], '
           b'"usage": {"prompt_tokens": 7, "completion_tokens": 3}}')
    assert caller.output(raw, "m", ctx, {"m": {"input": 1e6, "output": 1e6}}) == {
        "content": "hello"}
    assert (ctx.usage.tokens_in, ctx.usage.tokens_out, ctx.usage.cost_usd) == (7, 3, 10.0)
    with pytest.raises(RecordError):
        caller.output(b'{"choices": []}', "m", ctx, {})


@pytest.mark.parametrize("status, outcome", [
    (200, {"ok": 1}), (503, RuntimeError), (429, RuntimeError), (404, RecordError),
])
def test_http_answer(status: int, outcome: Any) -> None:
    response = httpx.Response(status, json={"ok": 1})
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            http.answer(response, "https://x")
    else:
        assert http.answer(response, "https://x") == outcome
    assert http.answer(httpx.Response(200, text="plain"), "https://x") == {"text": "plain"}
