"""The ``workbook`` kind: a published Excel workbook run chunk by chunk.

``config``: ``{"sha256": …, "filename": …, "size_bytes": …}``, written by
``POST /api/services/{folder}/{name}/versions`` (:mod:`batchd.core.services`), which
keeps the file. The handler is vectorised: it takes a chunk's records at once, gets
the version's compiled workbook (compiled on its first chunk in each process, from the
file kept in the database) and evaluates the chunk column-wise where the formulas allow
(:mod:`batchd.tasks.workbook.evaluate`): on the event loop for a light workbook and a
chunk of the usual size, as an inline task runs, else in two threads of its own.

Defining a ``workbook`` task through ``POST /api/tasks`` is possible only for a file
already published (a new version of the same workbook, say).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from batchd.domain import errors
from batchd.tasks.kinds import runtime
from batchd.tasks.kinds.base import config_of, task_def
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import TaskDef

INLINE_RECORDS = 2000


class WorkbookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    filename: str = Field(default="workbook.xlsx", min_length=1, max_length=255)
    size_bytes: int = Field(default=0, ge=0)


def build(spec: TaskSpec) -> TaskDef:
    config: WorkbookConfig = config_of(WorkbookConfig, spec)
    task = task_def(spec, handler=handler(config.sha256, _from_database(config.sha256)),
                    mode="async", vectorised=True)
    # The schemas document the names; a bad value fails its record, as in Spark. Only
    # the shape of a range input is checked when records come (batchd.tasks.workbook.inputs).
    task.validate_input = any(bool(v) for v in
                              ((task.input_schema or {}).get("properties") or {}).values())
    return task


async def check(spec: TaskSpec) -> None:
    """A definition must name a file that was published (and so compiled)."""
    config: WorkbookConfig = config_of(WorkbookConfig, spec)
    store = runtime.store()
    if store is not None and not await store.service_file_known(config.sha256):
        why = ("no published workbook has this SHA-256; publish the .xlsx with "
               "POST /api/services/{folder}/{name}/versions")
        raise errors.InvalidInput(
            f"config.sha256: {why}",
            details=[{"loc": ["body", "config", "sha256"], "msg": why, "type": "value_error"}])


def handler(key: str, content: Callable[[], Awaitable[bytes]]) -> Callable[..., Any]:
    """A vectorised handler over the workbook that ``content`` gives, compiled once per
    process under ``key``."""

    async def run_workbook(records: list[Any]) -> list[Any]:
        from batchd.tasks.workbook import cache, evaluate

        plan = await cache.plan(key, content)
        # A light workbook's chunk of the usual size is evaluated on the loop, as an
        # inline task is (a few milliseconds; no hand-over of the GIL between threads);
        # anything heavier, or a chunk that would wait for another of the same workbook,
        # in a thread.
        if plan.light and len(records) <= INLINE_RECORDS \
                and plan.lock.acquire(blocking=False):
            try:
                return evaluate.evaluate_held(plan, records)
            finally:
                plan.lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_evaluations(), evaluate.evaluate, plan, records)

    return run_workbook


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _evaluations() -> concurrent.futures.ThreadPoolExecutor:
    """The threads chunks are evaluated in: their own, since a compiled workbook runs
    one chunk at a time (waiting chunks must not hold the loop's default threads)."""
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="batchd-workbook")
    return _pool


def _from_database(sha256: str) -> Callable[[], Awaitable[bytes]]:
    async def fetch() -> bytes:
        store = runtime.store()
        if store is None:
            raise RuntimeError("workbook services need the database: run in a server or worker")
        content = await store.service_file(sha256)
        if content is None:
            raise RuntimeError(f"the workbook file {sha256} is not in the database")
        return bytes(content)

    return fetch


def in_code(*, name: str, version: str, content: Callable[[], bytes], inputs: list[str],
            outputs: list[str], description: str) -> TaskDef:
    """A workbook service registered in Python (``content`` builds or reads the file
    when the first chunk comes); nothing is kept in the database."""

    async def load() -> bytes:
        return await asyncio.to_thread(content)

    return TaskDef(
        name=name, version=version, handler=handler(f"code:{name}:{version}", load),
        vectorised=True, mode="async", kind="workbook", description=description,
        input_schema={"type": "object", "properties": {n: {} for n in inputs}},
        output_schema={"type": "object", "properties": {n: {} for n in outputs}},
        validate_input=False, takes_context=False,
    )
