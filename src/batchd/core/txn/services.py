"""The files of workbook services (``service_files``), found by their SHA-256."""

from __future__ import annotations

from dataclasses import dataclass

from batchd.core.txn.runner import Runner
from batchd.store import script as q
from batchd.store.script import Script


@dataclass(frozen=True, slots=True)
class ServiceFile:
    sha256: str
    filename: str
    content: bytes
    tenant_id: str | None
    created_at: float


def save_service_file(f: ServiceFile) -> Script[None]:
    yield q.run("insert_service_file", f.sha256, f.filename, len(f.content), f.content,
                f.tenant_id, f.created_at)


def service_file(sha256: str) -> Script[bytes | None]:
    content = yield q.value("service_file", sha256)
    return None if content is None else bytes(content)


def service_file_known(sha256: str) -> Script[bool]:
    return (yield q.value("service_file_known", sha256)) is not None


class ServiceFileOps(Runner):
    async def save_service_file(self, f: ServiceFile) -> None:
        """Keep ``f`` (a file already kept under its SHA-256 stays as it is)."""
        await self._write(save_service_file, f)

    async def service_file(self, sha256: str) -> bytes | None:
        """The file kept under ``sha256``, or None."""
        return await self._read(service_file, sha256)

    async def service_file_known(self, sha256: str) -> bool:
        return await self._read(service_file_known, sha256)
