"""Runs handlers in this process: async on the loop, sync in threads, CPU work in processes."""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from batchd.exec.base import Executor
from batchd.tasks.context import RecordError, TaskContext, Usage
from batchd.tasks.registry import TaskDef, default_registry


class LocalExecutor(Executor):
    """Executes every task mode locally.

    Args:
        threads: size of the thread pool for sync handlers.
        processes: size of the process pool for ``mode="process"`` handlers.
    """

    def __init__(self, *, threads: int = 16, processes: int = 2) -> None:
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="batchd-task")
        self._processes_n = processes
        self._processes: ProcessPoolExecutor | None = None

    async def run(self, task: TaskDef, records: list[Any], ctx: TaskContext) -> list[Any]:
        if task.mode == "process":
            return await self._run_in_process(task, records, ctx)
        if task.mode == "async":
            return await _run_async(task, records, ctx)
        if task.mode == "inline":
            return run_sync(task, records, ctx)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, run_sync, task, records, ctx)

    async def _run_in_process(
        self, task: TaskDef, records: list[Any], ctx: TaskContext
    ) -> list[Any]:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(
                self._processes_n, initializer=_exit_with_parent, initargs=(os.getpid(),)
            )
        loop = asyncio.get_running_loop()
        outputs, usage = await loop.run_in_executor(
            self._processes, _process_entry, task.handler.__module__, task.name, task.version,
            records, ctx.item_id, ctx.batch_id, ctx.attempt, ctx.runner,
        )
        if usage.reported:
            ctx.report_usage(
                tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost_usd=usage.cost_usd
            )
        return outputs

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.shutdown(wait=False, cancel_futures=True)


def _call(task: TaskDef, arg: Any, ctx: TaskContext) -> Any:
    return task.handler(arg, ctx) if task.takes_context else task.handler(arg)


def run_sync(task: TaskDef, records: list[Any], ctx: TaskContext) -> list[Any]:
    if task.vectorised:
        return _checked(task, list(_call(task, records, ctx)), len(records))
    if len(records) == 1:
        return [_call(task, records[0], ctx)]
    out = []
    for r in records:
        if ctx.cancelled:
            raise asyncio.CancelledError()
        try:
            out.append(_call(task, r, ctx))
        except RecordError as exc:
            out.append(exc)
        except Exception as exc:  # one bad record fails only itself in a multi-record item
            out.append(RecordError(f"{type(exc).__name__}: {exc}", code="handler_error"))
    return out


async def _run_async(task: TaskDef, records: list[Any], ctx: TaskContext) -> list[Any]:
    if task.vectorised:
        return _checked(task, list(await _call(task, records, ctx)), len(records))
    if len(records) == 1:
        return [await _call(task, records[0], ctx)]
    out = []
    for r in records:
        try:
            out.append(await _call(task, r, ctx))
        except RecordError as exc:
            out.append(exc)
        except Exception as exc:
            out.append(RecordError(f"{type(exc).__name__}: {exc}", code="handler_error"))
    return out


def _checked(task: TaskDef, outputs: list[Any], n: int) -> list[Any]:
    if len(outputs) != n:
        raise RuntimeError(
            f"vectorised task {task.name!r} returned {len(outputs)} outputs for {n} records"
        )
    return outputs


def _exit_with_parent(parent_pid: int) -> None:
    """Pool processes end when the process that made them is gone, even by ``kill -9``:
    forked siblings hold the task pipe open, so they would otherwise wait on it forever."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="batchd-parent-watch", daemon=True).start()


def _process_entry(
    module: str, name: str, version: str, records: list[Any], item_id: str, batch_id: str,
    attempt: int, runner: str | None,
) -> tuple[list[Any], Usage]:
    importlib.import_module(module)
    task = default_registry.get(name, version)
    ctx = TaskContext(item_id=item_id, batch_id=batch_id, attempt=attempt, runner=runner)
    if task.mode == "async" or asyncio.iscoroutinefunction(task.handler):
        outputs = asyncio.run(_run_async(task, records, ctx))
    else:
        outputs = run_sync(task, records, ctx)
    return outputs, ctx.usage
