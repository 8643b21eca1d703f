"""The ``python`` kind: a task around a function importable in every server and worker.

``config``: ``{"handler": "package.module:function", "mode"?: "async" | "thread" |
"inline", "vectorised"?: false}`` (``process`` mode is for ``@task`` functions only: the
process pool finds tasks by importing their module). Functions registered with ``@task``
are Python tasks already; this kind gives an importable function a definition
(schemas, runners, cost) made over the API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from batchd.domain import errors
from batchd.tasks.kinds.base import config_of, task_def
from batchd.tasks.kinds.spec import TaskSpec
from batchd.tasks.registry import TaskDef


class PythonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    handler: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    mode: Literal["async", "thread", "inline"] | None = None
    vectorised: bool = False


def load_handler(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise errors.InvalidInput(
            f"config.handler: cannot import {path!r}: {exc}",
            details=[{"loc": ["body", "config", "handler"], "msg": f"cannot import: {exc}",
                      "type": "import_error"}],
        ) from None
    # A function registered with @task is wrapped by nothing: the decorator returns it.
    if not callable(fn):
        raise errors.InvalidInput(f"config.handler: {path!r} is not callable")
    return fn  # type: ignore[no-any-return]


def build(spec: TaskSpec) -> TaskDef:
    config: PythonConfig = config_of(PythonConfig, spec)
    return task_def(spec, handler=load_handler(config.handler), mode=config.mode,
                    vectorised=config.vectorised)
