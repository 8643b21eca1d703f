"""The ``@task`` decorator, task definitions and discovery."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import jsonschema

from batchd.domain import errors
from batchd.domain.cost import CostModel, as_cost_model

log = logging.getLogger(__name__)

Mode = Literal["async", "thread", "process", "inline"]


@dataclass(frozen=True, slots=True)
class Runner:
    """A named execution profile of a task (model, timeout, price)."""

    name: str
    model: str | None = None
    timeout_s: float | None = None
    cost: CostModel | None = None
    description: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "timeout_s": self.timeout_s,
            "cost": self.cost.describe() if self.cost else None,
            "description": self.description,
        }


@dataclass(slots=True)
class TaskDef:
    name: str
    version: str
    handler: Callable[..., Any]
    vectorised: bool = False
    mode: Mode = "thread"
    kind: str = "python"
    description: str = ""
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    validate_input: bool = True
    runners: dict[str, Runner] = field(default_factory=dict)
    cost: CostModel = field(default_factory=CostModel)
    timeout_s: float | None = None
    max_attempts: int | None = None
    takes_context: bool = True
    _validator: Any = None

    def cost_for(self, runner: str | None) -> CostModel:
        if runner and runner in self.runners and self.runners[runner].cost is not None:
            return self.runners[runner].cost  # type: ignore[return-value]
        return self.cost

    def timeout_for(self, runner: str | None, batch_timeout_s: float | None) -> float | None:
        if batch_timeout_s:
            return batch_timeout_s
        if runner and runner in self.runners and self.runners[runner].timeout_s:
            return self.runners[runner].timeout_s
        return self.timeout_s

    def input_errors(self, record: Any) -> str | None:
        """The first schema error of ``record`` as text, or None when it is valid."""
        if self.input_schema is None or not self.validate_input:
            return None
        if self._validator is None:
            cls = jsonschema.validators.validator_for(self.input_schema)
            self._validator = cls(self.input_schema)
        err = jsonschema.exceptions.best_match(self._validator.iter_errors(record))
        if err is None:
            return None
        where = "/".join(str(p) for p in err.absolute_path)
        return f"{where}: {err.message}" if where else err.message

    def describe(self, versions: list[str]) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "versions": versions,
            "kind": self.kind,
            "description": self.description,
            "vectorised": self.vectorised,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "runners": [r.describe() for r in self.runners.values()],
            "cost": self.cost.describe(),
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
        }


def _version_key(version: str) -> tuple[Any, ...]:
    # Numbers compare as numbers and never with text (a TypeError); a pre-release
    # ("2.0.0-rc.1") sorts before its release, as in semantic versioning.
    release, _, pre = version.partition("-")

    def parts(text: str) -> tuple[tuple[int, int | str], ...]:
        return tuple((0, int(p)) if p.isdigit() else (1, p) for p in text.split("."))

    return parts(release), not pre, parts(pre) if pre else ()


class TaskRegistry:
    """Tasks by name and version."""

    def __init__(self) -> None:
        self._tasks: dict[str, dict[str, TaskDef]] = {}
        self._keys: tuple[tuple[str, str], ...] | None = None

    def add(self, task: TaskDef) -> None:
        self._tasks.setdefault(task.name, {})[task.version] = task
        self._keys = None

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def keys(self) -> tuple[tuple[str, str], ...]:
        """Every ``(name, version)`` registered, sorted; the same tuple until the next
        :meth:`add` (a worker asks on every claim)."""
        if self._keys is None:
            self._keys = tuple(sorted((n, v) for n, vs in self._tasks.items() for v in vs))
        return self._keys

    def versions(self, name: str) -> list[str]:
        return sorted(self._tasks.get(name, {}), key=_version_key)

    def get(self, name: str, version: str | None = None) -> TaskDef:
        """The task ``name`` at ``version`` (the newest when None).

        Raises:
            errors.NotFound: no such task or version.
        """
        versions = self._tasks.get(name)
        if not versions:
            raise errors.NotFound(f"task {name!r} is not registered")
        if version is None:
            return versions[self.versions(name)[-1]]
        if version not in versions:
            raise errors.NotFound(
                f"task {name!r} has no version {version!r}; known: {self.versions(name)}"
            )
        return versions[version]

    def all_latest(self) -> list[TaskDef]:
        return [self.get(n) for n in self.names()]

    def merge(self, other: TaskRegistry) -> None:
        for versions in other._tasks.values():
            for t in versions.values():
                self.add(t)


default_registry = TaskRegistry()


def _mode_for(fn: Callable[..., Any], mode: Mode | None) -> Mode:
    if mode is not None:
        return mode
    return "async" if inspect.iscoroutinefunction(fn) else "thread"


def task(
    name: str,
    version: str = "1.0.0",
    *,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    runners: Iterable[Runner | str] | None = None,
    cost: CostModel | float | dict[str, Any] | None = None,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
    vectorised: bool = False,
    mode: Mode | None = None,
    description: str | None = None,
    validate_input: bool = True,
    registry: TaskRegistry | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a batchd task.

    A per-record handler is called as ``handler(record, ctx)`` and returns the
    record's output; a vectorised one (``vectorised=True``) is called as
    ``handler(records, ctx)`` with every record of an item and returns one output
    per record. Either may be ``async``. ``ctx`` (a :class:`TaskContext`) is
    optional: a handler with a single parameter gets only the input.

    Args:
        name: task name used by clients.
        version: semantic version; clients may pin one.
        input_schema: JSON Schema each record is checked against at submission.
        output_schema: JSON Schema describing each output (documentation, export).
        runners: execution profiles clients may choose per batch.
        cost: a :class:`CostModel`, or a flat price per record.
        timeout_s: default per-item timeout.
        max_attempts: default attempts before an item fails.
        vectorised: the handler takes all records of an item at once.
        mode: ``async`` / ``thread`` / ``process`` / ``inline``; inferred when omitted.
        description: shown by ``GET /api/tasks``; the docstring when omitted.
        validate_input: check records against ``input_schema`` at submission.
        registry: where to register (the process-wide default when omitted).
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        runner_map = {}
        for r in runners or ():
            r = Runner(name=r) if isinstance(r, str) else r
            runner_map[r.name] = r
        (registry or default_registry).add(
            TaskDef(
                name=name,
                version=version,
                handler=fn,
                vectorised=vectorised,
                mode=_mode_for(fn, mode),
                description=description or inspect.getdoc(fn) or "",
                input_schema=input_schema,
                output_schema=output_schema,
                validate_input=validate_input,
                runners=runner_map,
                cost=as_cost_model(cost),
                timeout_s=timeout_s,
                max_attempts=max_attempts,
                takes_context=len(params) >= 2,
            )
        )
        return fn

    return decorate


class TaskModuleError(ImportError):
    """A task module named in settings (``BATCHD_TASKS``) that cannot be imported, said in
    one line: the module, and why (not found where it was looked for, or the error its
    own code raised, with the file and line)."""


def import_task_module(name: str) -> None:
    """Import ``name``; raises :class:`TaskModuleError`."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise TaskModuleError(
                f"cannot import task module {name!r} (BATCHD_TASKS): no module named "
                f"{exc.name!r} in the working directory ({os.getcwd()}) or on the Python path"
            ) from None
        raise TaskModuleError(_failed(name, exc)) from None
    except Exception as exc:  # the module's own code failed: say where
        raise TaskModuleError(_failed(name, exc)) from None


def _failed(name: str, exc: BaseException) -> str:
    text, where = str(exc), ""
    if isinstance(exc, SyntaxError):
        text = str(exc.msg)
        where = f" ({exc.filename}, line {exc.lineno})" if exc.filename else ""
    else:
        frame = _innermost_own_frame(name, exc)
        if frame is not None:
            where = f" ({frame.filename}, line {frame.lineno})"
    return (f"task module {name!r} (BATCHD_TASKS) failed to import: "
            f"{type(exc).__name__}: {text}{where}")


def _innermost_own_frame(name: str, exc: BaseException) -> traceback.FrameSummary | None:
    """Where the user's code raised: the innermost frame in the module's package (not in
    a library it called), else the innermost outside the import machinery."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    try:
        spec = importlib.util.find_spec(name.split(".")[0])
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        root = os.path.dirname(spec.origin)
        frames = [f for f in frames if f.filename.startswith(root + os.sep)] or frames
    return frames[-1] if frames else None


def load_tasks(
    modules: Iterable[str], *, examples: bool = True, entry_points: bool = True
) -> TaskRegistry:
    """Import task modules (settings, then the ``batchd.tasks`` entry points).

    Raises:
        TaskModuleError: a module of ``modules`` cannot be imported.
    """
    if examples:
        importlib.import_module("batchd.tasks.examples")
    for mod in modules:
        import_task_module(mod)
    if entry_points:
        for ep in metadata.entry_points(group="batchd.tasks"):
            if ep.value == "batchd.tasks.examples" and not examples:
                continue
            try:
                ep.load()
            except Exception:  # a broken plug-in must not stop the server
                log.exception("could not load task entry point %s", ep.name)
    registry = TaskRegistry()
    registry.merge(default_registry)
    from batchd.tasks import dispatch  # imports this module

    # Mixed batches (the Simulations dialect's templates) run through a dispatcher.
    registry.add(dispatch.dispatcher(registry))
    # The AI job queue's local provider runs a flush's mixed job types through one too.
    registry.add(dispatch.dispatcher(
        registry, name=dispatch.AIBATCH, key="job_type", params_key="payload"
    ))
    from batchd.tasks import upstream  # the requests of /v1 batches, sent to model upstreams

    registry.add(upstream.task_def())
    from batchd.tasks import taskspec  # Parallel's task-spec runs, sent to model upstreams

    registry.add(taskspec.task_def(registry))
    return registry
