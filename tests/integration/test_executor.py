"""LocalExecutor: every handler mode, record errors, usage and cancellation."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

import tests.support.tasks  # noqa: F401  (registers the test tasks)
from batchd.exec.local import LocalExecutor
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.registry import TaskRegistry, default_registry, task
from tests.conftest import scaled

pytestmark = pytest.mark.timeout(scaled(30))


def ctx() -> TaskContext:
    return TaskContext(item_id="itm_1", batch_id="bat_1", attempt=1)


@pytest.fixture
def executor() -> Any:
    ex = LocalExecutor(threads=2, processes=1)
    yield ex
    ex.close()


async def test_executor_process_mode_runs_in_another_process(executor: LocalExecutor) -> None:
    c = ctx()
    out = await executor.run(default_registry.get("cpu_sum"), [{"n": 10}, {"n": 5}], c)
    assert [o["sum"] for o in out] == [45, 10]
    assert out[0]["pid"] != os.getpid()
    assert c.usage.reported and c.usage.tokens_in == 2 and c.usage.cost_usd == 0.5


async def test_executor_thread_mode_runs_sync_handler_off_the_loop(executor: LocalExecutor) -> None:
    reg = TaskRegistry()
    loop_thread: list[bool] = []

    @task("t", registry=reg)
    def handler(record: int) -> int:
        try:
            asyncio.get_running_loop()
            loop_thread.append(True)
        except RuntimeError:
            loop_thread.append(False)
        return record * 2

    assert await executor.run(reg.get("t"), [21], ctx()) == [42]
    assert loop_thread == [False]


async def test_executor_async_per_record_handler_reports_record_errors(
    executor: LocalExecutor,
) -> None:
    reg = TaskRegistry()

    @task("a", registry=reg)
    async def handler(record: int, c: TaskContext) -> int:
        if record < 0:
            raise RecordError("negative")
        if record == 0:
            raise ValueError("zero")
        c.report_usage(tokens_out=1)
        return record

    c = ctx()
    out = await executor.run(reg.get("a"), [1, -1, 0, 2], c)
    assert out[0] == 1 and out[3] == 2
    assert isinstance(out[1], RecordError) and out[1].message == "negative"
    assert isinstance(out[2], RecordError) and "ValueError" in out[2].message
    assert c.usage.tokens_out == 2


async def test_executor_single_record_exception_fails_the_item(executor: LocalExecutor) -> None:
    reg = TaskRegistry()

    @task("boom", registry=reg, mode="inline")
    def handler(record: Any) -> Any:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await executor.run(reg.get("boom"), [{}], ctx())


async def test_executor_vectorised_output_count_is_checked(executor: LocalExecutor) -> None:
    reg = TaskRegistry()

    @task("short", registry=reg, vectorised=True, mode="inline")
    def handler(records: list[Any]) -> list[Any]:
        return records[:1]

    with pytest.raises(RuntimeError, match="returned 1 outputs for 2 records"):
        await executor.run(reg.get("short"), [1, 2], ctx())


async def test_executor_cancel_flag_reaches_a_thread_handler(executor: LocalExecutor) -> None:
    reg = TaskRegistry()
    started = threading.Event()
    seen: list[bool] = []

    @task("slow", registry=reg)
    def handler(record: Any, c: TaskContext) -> Any:
        started.set()
        deadline = time.monotonic() + scaled(30)
        while time.monotonic() < deadline:
            if c.cancelled:
                seen.append(True)
                raise RuntimeError("stopped")
            time.sleep(0.01)
        return "finished"

    c = ctx()
    run = asyncio.ensure_future(executor.run(reg.get("slow"), [1], c))
    # Cancel only once the handler runs: the flag must reach code already under way.
    assert await asyncio.to_thread(started.wait, scaled(10)), "the handler never started"
    c.cancel()
    with pytest.raises(RuntimeError, match="stopped"):
        await run
    assert seen == [True]
