"""Files (``/v1/files``): stored in the database in parts, streamed in and out.

A file's content is kept as parts of :data:`PART_BYTES` in ``v1_file_parts``, written
a few parts per transaction while the upload arrives and read a few at a time when it is
sent or read line by line (a batch's input): no file is ever whole in memory. A file is
visible once its last part is written; an upload that never finished is dropped after
``BATCHD_STAGING_TTL_S``. Files a batch writes (``batch_output``) belong to the batch
until it publishes them.

A file may expire (``expires_at``): as OpenAI's, files of purpose ``batch`` and
``batch_output`` after ``BATCHD_V1_FILE_EXPIRY_S`` (30 days) unless the upload or the batch
says otherwise, the others only when their upload says so. An expired file is gone at
once (a 404, left out of lists); a sweep drops its content soon after.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchd.core import access
from batchd.core.txn.files import FileRow
from batchd.domain import errors
from batchd.domain.models import Principal

if TYPE_CHECKING:
    from batchd.core.db import Database

PART_BYTES = 1 << 20
PARTS_PER_WRITE = 4
PARTS_PER_READ = 4
PURPOSES = ("batch", "batch_output", "user_data")
EXPIRING = ("batch", "batch_output")  # purposes that expire without being told to


def new_file_id() -> str:
    import secrets

    return f"file-{secrets.token_hex(12)}"


class FileTooLarge(errors.LimitExceeded):
    code = "file_too_large"


def expired(row: FileRow, now: float) -> bool:
    return row.expires_at is not None and row.expires_at <= now


@dataclass(frozen=True, slots=True)
class FilePage:
    files: list[FileRow]
    has_more: bool


class PartWriter:
    """Appends content to a file being written, :data:`PART_BYTES` a part."""

    def __init__(self, store: Database, file_pk: int, *, max_bytes: int | None = None) -> None:
        self.store = store
        self.file_pk = file_pk
        self.max_bytes = max_bytes
        self.size = 0
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._seq = 0

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise FileTooLarge(f"the file is larger than the limit of {self.max_bytes} bytes",
                               details={"limit": self.max_bytes})
        self._buffer += data
        while len(self._buffer) >= PART_BYTES:
            self._parts.append(bytes(self._buffer[:PART_BYTES]))
            del self._buffer[:PART_BYTES]
        if len(self._parts) >= PARTS_PER_WRITE:
            await self._flush()

    async def close(self) -> None:
        if self._buffer:
            self._parts.append(bytes(self._buffer))
            self._buffer.clear()
        await self._flush()

    async def _flush(self) -> None:
        if self._parts:
            parts, self._parts = self._parts, []
            await self.store.insert_v1_file_parts(self.file_pk, self._seq, parts)
            self._seq += len(parts)


class Files:
    """Uploads, reads and deletes of a tenant's files."""

    def __init__(self, *, store: Database, clock: Callable[[], float], max_bytes: int,
                 expiry_s: float) -> None:
        self.store = store
        self.clock = clock
        self.max_bytes = max_bytes
        self.expiry_s = expiry_s

    def expires_at(self, purpose: str, created_at: float, seconds: float | None
                   ) -> float | None:
        """When a file made at ``created_at`` expires: ``seconds`` after, if given, else
        as its purpose does (None: kept until deleted)."""
        if seconds is None:
            return created_at + self.expiry_s if purpose in EXPIRING else None
        return created_at + seconds

    async def upload(self, principal: Principal, *, chunks: AsyncIterator[bytes],
                     describe: Callable[[], tuple[str, str, float | None]]) -> FileRow:
        """Store an upload as it arrives; ``describe()``, called once it is all read, gives
        its purpose, name and seconds to expire after (None: its purpose's default), or
        raises. Raises FileTooLarge; nothing is kept on error."""
        file_id = new_file_id()
        created_at = self.clock()
        pk = await self.store.insert_v1_file(
            id=file_id, tenant_id=principal.tenant_id, owner=principal.owner, purpose="",
            filename="", batch_pk=None, created_at=created_at, expires_at=None)
        writer = PartWriter(self.store, pk, max_bytes=self.max_bytes)
        try:
            async for chunk in chunks:
                await writer.write(chunk)
            await writer.close()
            purpose, filename, expires_after_s = describe()
            await self.store.publish_v1_file(
                pk, writer.size, purpose=purpose, filename=filename,
                expires_at=self.expires_at(purpose, created_at, expires_after_s))
        except BaseException:
            await asyncio.shield(self.store.drop_v1_file(pk))
            raise
        return await self.get(principal, file_id)

    async def get(self, principal: Principal, file_id: str) -> FileRow:
        found = await self.store.v1_file(file_id, tenant_id=principal.tenant_id,
                                         owner=access.owner_scope(principal))
        if found is None or expired(found, self.clock()):
            raise errors.NotFound(f"No such File object: {file_id}", details={"id": file_id})
        return found

    async def page(self, principal: Principal, *, after: str | None, limit: int,
                   ascending: bool, purpose: str | None) -> FilePage:
        cursor = 0 if ascending else 2**62
        if after:
            cursor = (await self.get(principal, after)).pk
        rows = await self.store.v1_files(
            tenant_id=principal.tenant_id, owner=access.owner_scope(principal),
            purpose=purpose, cursor_pk=cursor, limit=limit + 1, ascending=ascending)
        now = self.clock()
        return FilePage(files=[r for r in rows[:limit] if not expired(r, now)],
                        has_more=len(rows) > limit)

    async def delete(self, principal: Principal, file_id: str) -> FileRow:
        found = await self.get(principal, file_id)
        await self.store.drop_v1_file(found.pk)
        return found

    async def content(self, row: FileRow) -> AsyncIterator[bytes]:
        """The file's bytes, a part at a time."""
        after = -1
        while True:
            parts = await self.store.v1_file_parts(row.pk, after_seq=after, limit=PARTS_PER_READ)
            for seq, data in parts:
                after = seq
                yield data
            if len(parts) < PARTS_PER_READ:
                return

    async def lines(self, row: FileRow) -> AsyncIterator[tuple[int, bytes]]:
        """``(line number from 1, line)`` of a text file, blank lines left out."""
        carry = b""
        number = 0
        async for data in self.content(row):
            lines = (carry + data).split(b"\n")
            carry = lines.pop()
            for line in lines:
                number += 1
                if line.strip():
                    yield number, line
        if carry.strip():
            yield number + 1, carry

    async def drop_stale_uploads(self, ttl_s: float) -> int:
        return await self.store.drop_stale_v1_uploads(before=self.clock() - ttl_s)

    async def drop_expired(self) -> int:
        """Drop the files that have expired (rows and content); how many."""
        return await self.store.drop_expired_v1_files(now=self.clock())
