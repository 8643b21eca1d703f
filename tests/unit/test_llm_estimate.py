"""The ``llm`` kind's cost estimate: prompt tokens and max_tokens at the price table's rates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchd.domain import pricing
from batchd.settings import Settings
from batchd.tasks import kinds
from batchd.tasks.kinds import llm, runtime
from batchd.tasks.registry import TaskDef, TaskRegistry


@pytest.fixture(autouse=True)
def llm_settings() -> Iterator[None]:
    before = runtime._settings
    runtime.configure(Settings(llm_model="small-1", llm_prices={
        "small-1": {"input": 1.0, "output": 2.0}, "big-1": {"input": 10.0, "output": 20.0}}))
    yield
    runtime._settings = before


def define(**fields: object) -> TaskDef:
    body = {"name": "summary", "kind": "llm", "runners": [{"name": "deep", "model": "big-1"},
                                                          {"name": "flat", "cost": {
                                                              "per_record_usd": 0.5}}],
            "config": {"prompt": "Sum up {text}", "max_tokens": 100}, **fields}
    return kinds.define(body, registry=TaskRegistry())


def tokens_in(text: str) -> int:
    return llm.MESSAGE_TOKENS + -(-len(text.encode()) // llm.BYTES_PER_TOKEN)


def test_llm_estimate_prices_the_rendered_prompt_and_max_tokens() -> None:
    task = define()
    record = {"text": "x" * 300}
    expected = (tokens_in("Sum up " + "x" * 300) * 1.0 + 100 * 2.0) / 1e6
    assert task.cost_for(None).estimate_item([record]) == pytest.approx(expected)
    # A longer prompt costs more; the answer's cap bounds the output.
    assert task.cost_for(None).estimate_item([{"text": "x" * 3000}]) > expected
    # The runner's model, at its price; a runner's own cost wins.
    big = (tokens_in("Sum up " + "x" * 300) * 10.0 + 100 * 20.0) / 1e6
    assert task.cost_for("deep").estimate_item([record]) == pytest.approx(big)
    assert task.cost_for("flat").estimate_item([record]) == 0.5
    assert task.describe(["1.0.0"])["cost"]["depends_on_input"] is True


def test_llm_estimate_without_max_tokens_assumes_a_default_answer() -> None:
    task = define(config={"prompt": "Hi", "system": "Be brief."})
    expected = ((tokens_in("Hi") + tokens_in("Be brief.")) * 1.0
                + llm.DEFAULT_ANSWER_TOKENS * 2.0) / 1e6
    assert task.cost_for(None).estimate_item([{}]) == pytest.approx(expected)


def test_llm_estimate_of_a_task_with_a_price_is_that_price() -> None:
    task = define(cost={"per_record_usd": 0.25})
    assert task.cost_for(None).estimate_item([{"text": "a"}]) == 0.25
    assert task.cost_for("deep").estimate_item([{"text": "a"}]) == 0.25


def test_llm_cost_falls_back_to_the_default_price_table() -> None:
    # gpt-4o-mini is in the default table; BATCHD_LLM_PRICES rows are merged over it.
    standard = pricing.price_table()["gpt-4o-mini"]
    assert llm.cost_usd({}, "gpt-4o-mini", 1000, 100) == pytest.approx(
        standard.standard_usd(1000, 100))
    assert llm.cost_usd({}, "my-local-model", 1000, 100) == 0.0
    assert llm.cost_usd({"gpt-4o-mini": {"input": 0, "output": 0}}, "gpt-4o-mini", 10, 10) == 0
