"""The @task decorator and the task registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from batchd.domain import errors
from batchd.domain.cost import CostModel
from batchd.tasks import registry as reg
from batchd.tasks.registry import Runner, TaskRegistry, task

SCHEMA = {
    "type": "object",
    "required": ["n"],
    "properties": {
        "n": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry()


@pytest.fixture
def register(registry: TaskRegistry) -> Callable[..., Callable[..., Any]]:
    """Factory: ``register(name, version, **options)`` registers a trivial handler."""

    def make(name: str = "t", version: str = "1.0.0", **options: Any) -> Callable[..., Any]:
        def handler(record: Any, ctx: Any) -> Any:
            """Echoes its input."""
            return record

        return task(name, version, registry=registry, **options)(handler)

    return make


def test_registry_sorts_versions_semantically(
    registry: TaskRegistry, register: Callable[..., Any]
) -> None:
    for v in ["1.10.0", "1.2.0", "0.9", "1.9.3", "1.2"]:
        register("t", v)

    assert registry.versions("t") == ["0.9", "1.2", "1.2.0", "1.9.3", "1.10.0"]
    assert registry.get("t").version == "1.10.0"
    assert registry.get("t", "1.2.0").version == "1.2.0"


def test_registry_orders_pre_releases_before_their_release(
    registry: TaskRegistry, register: Callable[..., Any]
) -> None:
    for v in ["2.0.0", "2.0.0-rc.10", "1.10.0", "2.0.0-rc.2", "2.0.0-alpha"]:
        register("t", v)

    assert registry.versions("t") == ["1.10.0", "2.0.0-alpha", "2.0.0-rc.2", "2.0.0-rc.10", "2.0.0"]
    assert registry.get("t").version == "2.0.0"


def test_registry_unknown_task_or_version(
    registry: TaskRegistry, register: Callable[..., Any]
) -> None:
    register("t", "1.0.0")

    with pytest.raises(errors.NotFound):
        registry.get("nope")
    with pytest.raises(errors.NotFound) as caught:
        registry.get("t", "9.9.9")
    assert "1.0.0" in caught.value.message
    assert registry.versions("nope") == []


def test_registry_decorator_keeps_function_and_isolates_registry(
    registry: TaskRegistry,
) -> None:
    def fn(record: Any) -> Any:
        return record

    assert task("isolated-task", registry=registry)(fn) is fn
    assert registry.names() == ["isolated-task"]
    assert "isolated-task" not in reg.default_registry.names()
    assert registry.get("isolated-task").handler is fn


def test_registry_detects_context_parameter(registry: TaskRegistry) -> None:
    @task("with_ctx", registry=registry)
    def with_ctx(record: Any, ctx: Any) -> Any:
        return record

    @task("without_ctx", registry=registry)
    def without_ctx(record: Any) -> Any:
        return record

    @task("kw_only_ctx", registry=registry)
    def kw_only_ctx(record: Any, *, ctx: Any = None) -> Any:
        return record

    assert registry.get("with_ctx").takes_context is True
    assert registry.get("without_ctx").takes_context is False
    assert registry.get("kw_only_ctx").takes_context is False


def test_registry_infers_mode_and_description(registry: TaskRegistry) -> None:
    @task("a", registry=registry)
    async def a(record: Any) -> Any:
        """Async one."""
        return record

    @task("s", registry=registry, description="explicit")
    def s(record: Any) -> Any:
        """Not used."""
        return record

    @task("p", registry=registry, mode="process")
    def p(record: Any) -> Any:
        return record

    assert (registry.get("a").mode, registry.get("a").description) == ("async", "Async one.")
    assert (registry.get("s").mode, registry.get("s").description) == ("thread", "explicit")
    assert registry.get("p").mode == "process"


def test_registry_runners_and_costs(registry: TaskRegistry, register: Callable[..., Any]) -> None:
    register(
        "t", runners=["plain", Runner("fast", cost=CostModel(per_record_usd=0.5), timeout_s=3)],
        cost=0.1, timeout_s=10,
    )
    t = registry.get("t")

    assert sorted(t.runners) == ["fast", "plain"]
    assert t.cost_for(None).per_record_usd == 0.1
    assert t.cost_for("plain").per_record_usd == 0.1
    assert t.cost_for("fast").per_record_usd == 0.5
    assert t.timeout_for("fast", None) == 3
    assert t.timeout_for("plain", None) == 10
    assert t.timeout_for("fast", 7.0) == 7.0
    assert t.describe(registry.versions("t"))["versions"] == ["1.0.0"]


def test_registry_input_errors_from_schema(
    registry: TaskRegistry, register: Callable[..., Any]
) -> None:
    register("t", input_schema=SCHEMA)
    t = registry.get("t")

    assert t.input_errors({"n": 1, "tags": ["a"]}) is None
    missing = t.input_errors({})
    assert missing is not None and "'n' is a required property" in missing
    wrong = t.input_errors({"n": "x"})
    assert wrong is not None and wrong.startswith("n: ") and "integer" in wrong
    nested = t.input_errors({"n": 1, "tags": ["a", 2]})
    assert nested is not None and nested.startswith("tags/1: ")


def test_registry_input_errors_skipped_without_schema_or_validation(
    registry: TaskRegistry, register: Callable[..., Any]
) -> None:
    register("free")
    register("unchecked", input_schema=SCHEMA, validate_input=False)

    assert registry.get("free").input_errors({"anything": True}) is None
    assert registry.get("unchecked").input_errors({}) is None


def test_registry_merge_and_all_latest(
    registry: TaskRegistry, register: Callable[..., Any]
) -> None:
    register("b", "1.0.0")
    other = TaskRegistry()
    task("a", "2.0.0", registry=other)(lambda r: r)
    task("b", "1.1.0", registry=other)(lambda r: r)

    registry.merge(other)

    assert [(t.name, t.version) for t in registry.all_latest()] == [("a", "2.0.0"), ("b", "1.1.0")]
