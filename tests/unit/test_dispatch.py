"""The dispatcher task: one batch running records of several tasks (simulation templates)."""

from __future__ import annotations

from typing import Any

import pytest

from batchd.domain import errors
from batchd.domain.cost import CostModel
from batchd.tasks import dispatch
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.registry import TaskRegistry, task


@pytest.fixture
def registry() -> TaskRegistry:
    reg = TaskRegistry()

    @task("double", input_schema={"type": "object", "required": ["n"]},
          cost=CostModel(per_record=lambda p: 0.01 * p["n"]), mode="thread", registry=reg)
    def double(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        ctx.report_usage(tokens_out=params["n"], cost_usd=0.5)
        return {"n": params["n"] * 2}

    @task("shout", mode="async", registry=reg)
    async def shout(params: dict[str, Any]) -> str:
        return str(params["word"]).upper()

    @task("count", vectorised=True, mode="inline", cost=0.2, registry=reg)
    def count(records: list[dict[str, Any]]) -> list[Any]:
        return [len(r) for r in records]

    reg.add(dispatch.dispatcher(reg))
    reg.add(dispatch.dispatcher(reg, name="other", key="kind"))
    return reg


def ctx() -> TaskContext:
    return TaskContext(item_id="itm_1", batch_id="bat_1", attempt=1)


async def test_dispatcher_runs_the_named_task_of_each_record(registry: TaskRegistry) -> None:
    sim = registry.get(dispatch.SIMULATION)
    c = ctx()
    assert await sim.handler({"template_id": "double", "n": 4}, c) == {"n": 8}
    assert (c.usage.tokens_out, c.usage.cost_usd) == (4, 0.5)
    assert await sim.handler({"template_id": "shout", "word": "hi"}, ctx()) == "HI"
    assert await sim.handler({"template_id": "count", "a": 1, "b": 2}, ctx()) == 2


def test_dispatcher_prices_each_record_by_its_task(registry: TaskRegistry) -> None:
    cost = registry.get(dispatch.SIMULATION).cost
    assert cost.estimate_item([{"template_id": "double", "n": 3}]) == pytest.approx(0.03)
    assert cost.estimate_item([{"template_id": "count"}]) == pytest.approx(0.2)
    assert cost.estimate_item([{"template_id": "nope"}]) == 0.0


async def test_dispatcher_fails_records_it_cannot_run_for_good(registry: TaskRegistry) -> None:
    sim = registry.get(dispatch.SIMULATION)
    with pytest.raises(RecordError, match="nope"):
        await sim.handler({"template_id": "nope"}, ctx())
    with pytest.raises(RecordError, match="double"):
        await sim.handler({"template_id": "double"}, ctx())  # n is required
    with pytest.raises(RecordError):
        await sim.handler({"n": 1}, ctx())
    with pytest.raises(RecordError, match="itself"):
        await sim.handler({"template_id": dispatch.SIMULATION}, ctx())
    with pytest.raises(RecordError, match="dispatcher"):
        await sim.handler({"template_id": "other", "kind": "double", "n": 1}, ctx())


def test_target_names_unknown_tasks(registry: TaskRegistry) -> None:
    with pytest.raises(errors.UnknownTask, match="weather"):
        dispatch.target(registry, "weather", dispatcher=dispatch.SIMULATION)
