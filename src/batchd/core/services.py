"""Publishing workbook services: an ``.xlsx`` file becomes a version of ``folder/name``.

The file is compiled before anything is kept, so a workbook the formula engine cannot
run (a function it lacks, a missing sheet, a cycle) is refused here, naming the cell
and the function. A published version is a task definition of kind ``workbook``
(:mod:`batchd.tasks.kinds.workbook`) naming the file by its SHA-256; the file itself is
kept in ``service_files``. Every server and worker builds the version from there and
compiles it once per process. A version, once published, never changes: the same file
again is fine, another file is a 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from batchd.core import roles
from batchd.core.taskset import TaskSource
from batchd.core.txn.services import ServiceFile
from batchd.domain import errors
from batchd.domain.models import Principal
from batchd.tasks.registry import TaskDef

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.\-]+)?$")
MAX_WORKBOOK_BYTES = 32 * 1024 * 1024


class InvalidWorkbook(errors.InvalidInput):
    code = "invalid_workbook"


class FileStore(Protocol):
    async def save_service_file(self, f: ServiceFile) -> None: ...


@dataclass(frozen=True, slots=True)
class Published:
    """A published version: its task, its file, and what it takes and gives."""

    task: TaskDef
    sha256: str
    filename: str
    size_bytes: int
    inputs: list[str]
    outputs: list[str]
    vectorised_share: float


class Services:
    """Publishes workbook services.

    Args:
        store: where the files are kept (the engine's database).
        catalog: the task definitions every process builds from.
        clock: seconds since the epoch.
    """

    def __init__(self, *, store: FileStore, catalog: TaskSource | None,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock

    async def publish(self, principal: Principal, *, service: str, version: str,
                      content: bytes, filename: str) -> Published:
        """Compile ``content``, keep it, and define ``service`` at ``version`` (operator).

        Raises:
            errors.Forbidden: not the operator key (the catalog is every tenant's).
            InvalidWorkbook: not a workbook, or one the engine cannot run.
            errors.InvalidInput: a bad service name or version.
            errors.Conflict: this version exists with another file, or the name is a
                Python task's.
        """
        roles.require_operator(principal, "publishing a service")
        _check_reference(service, version)
        if self.catalog is None:
            raise errors.Conflict("this server keeps no task definitions")
        if not content:
            raise InvalidWorkbook("the body is empty: send the .xlsx file as the body")
        plan = await asyncio.to_thread(_compile, content)
        sha = hashlib.sha256(content).hexdigest()
        now = self.clock()
        await self.store.save_service_file(ServiceFile(
            sha256=sha, filename=filename, content=content, tenant_id=principal.tenant_id,
            created_at=now))
        inputs, outputs = list(plan.inputs), list(plan.outputs)
        task = await self.catalog.create(
            _definition(service, version, filename, sha, len(content), plan.input_schema,
                        outputs),
            tenant_id=principal.tenant_id, now=now)
        return Published(task=task, sha256=sha, filename=filename, size_bytes=len(content),
                         inputs=inputs, outputs=outputs,
                         vectorised_share=plan.vectorised_share)


def _check_reference(service: str, version: str) -> None:
    if not SERVICE_NAME.match(service):
        raise errors.InvalidInput(
            f"service {service!r} is not folder/name (letters, digits, _ . -)",
            details={"field": "service", "problem": "expected folder/name"})
    if not VERSION.match(version):
        raise errors.InvalidInput(
            f"version {version!r} is not a semantic version such as 1.4.3",
            details={"field": "version", "problem": "expected MAJOR.MINOR.PATCH"})


def _compile(content: bytes) -> Any:
    try:
        from batchd.tasks.workbook.compiler import WorkbookError, compile_workbook
    except ImportError:  # the optional dependencies
        raise errors.Conflict("workbook services need the workbooks extra: "
                              "pip install 'batchd[workbooks]'") from None
    try:
        return compile_workbook(content)
    except WorkbookError as exc:
        problem: dict[str, Any] = {"loc": ["body"], "msg": exc.message,
                                   "type": "unsupported_function" if exc.function
                                   else "invalid_workbook"}
        if exc.cell:
            problem["cell"] = exc.cell
        if exc.function:
            problem["function"] = exc.function
        raise InvalidWorkbook(exc.message, details=[problem]) from None


def _definition(service: str, version: str, filename: str, sha: str, size: int,
                input_schema: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    inputs = list(input_schema["properties"])
    return {
        "name": service, "version": version, "kind": "workbook",
        "description": (f"Excel workbook {filename}: inputs {', '.join(inputs) or '(none)'}; "
                        f"outputs {', '.join(outputs)}"),
        "input_schema": input_schema,
        "output_schema": {"type": "object", "properties": {n: {} for n in outputs}},
        "config": {"sha256": sha, "filename": filename, "size_bytes": size},
    }
