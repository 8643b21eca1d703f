"""Files of /v1/files (rows and content parts) and the /v1 batches over engine batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchd.core.txn.runner import Runner
from batchd.store import script as q
from batchd.store.script import Script


@dataclass(frozen=True, slots=True)
class FileRow:
    pk: int
    id: str
    tenant_id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    status: str
    created_at: float
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class V1BatchRow:
    """A /v1 batch with its engine batch's counters (None before it has one)."""

    pk: int
    id: str
    tenant_id: str
    owner: str
    dialect: str
    engine_batch_id: str | None
    input_file_id: str | None
    endpoint: str
    completion_window: str
    metadata: bytes | None
    status: str
    errors: bytes | None
    output_file_id: str | None
    error_file_id: str | None
    created_at: float
    expires_at: float | None
    in_progress_at: float | None
    finalizing_at: float | None
    completed_at: float | None
    failed_at: float | None
    expired_at: float | None
    cancelling_at: float | None
    cancelled_at: float | None
    engine_status: str | None
    n_total: int
    n_queued: int
    n_running: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int
    tokens_in: int
    tokens_out: int
    finished_at: float | None

    @property
    def engine_ended(self) -> bool:
        """The engine batch has ended and nothing of it runs any more."""
        return self.engine_status not in (None, "open", "closed") and (
            self.finished_at is not None)


def _file(r: Any) -> FileRow:
    return FileRow(*r[:10])


def _batch(r: Any) -> V1BatchRow:
    values = list(r)
    for i in (9, 11):  # metadata, errors
        values[i] = bytes(values[i]) if values[i] is not None else None
    for i in range(24, 32):  # counters of a batch without an engine batch yet
        values[i] = values[i] or 0
    return V1BatchRow(*values)


def insert_file(fields: dict[str, Any]) -> Script[int]:
    return int((yield q.value("insert_v1_file", **fields)))


def insert_parts(file_pk: int, first_seq: int, parts: list[bytes]) -> Script[None]:
    for i, data in enumerate(parts):
        yield q.run("insert_v1_file_part", file_pk=file_pk, seq=first_seq + i, data=data)


def publish_file(pk: int, size: int, purpose: str | None = None,
                 filename: str | None = None, expires_at: float | None = None) -> Script[int]:
    return int((yield q.run("publish_v1_file", pk=pk, bytes=size, purpose=purpose,
                            filename=filename, expires_at=expires_at)))


def drop_file(pk: int) -> Script[None]:
    yield q.run("delete_v1_file_parts", file_pk=pk)
    yield q.run("delete_v1_file", pk=pk)


def get_file(file_id: str, tenant_id: str, owner: str | None) -> Script[FileRow | None]:
    row = yield q.one("v1_file", id=file_id, tenant_id=tenant_id, owner=owner)
    return None if row is None else _file(row)


def page_files(tenant_id: str, owner: str | None, purpose: str | None, cursor_pk: int,
               limit: int, ascending: bool) -> Script[list[FileRow]]:
    if ascending:
        rows = yield q.rows("v1_files_after", tenant_id=tenant_id, owner=owner,
                            purpose=purpose, after_pk=cursor_pk, limit=limit)
    else:
        rows = yield q.rows("v1_files_before", tenant_id=tenant_id, owner=owner,
                            purpose=purpose, before_pk=cursor_pk, limit=limit)
    return [_file(r) for r in rows]


def file_parts(file_pk: int, after_seq: int, limit: int) -> Script[list[tuple[int, bytes]]]:
    rows = yield q.rows("v1_file_parts", file_pk=file_pk, after_seq=after_seq, limit=limit)
    return [(r[0], bytes(r[1])) for r in rows]


def _drop_found(query: str, **params: Any) -> Script[int]:
    """Drop the files ``query`` finds (a bounded number); how many."""
    rows = yield q.rows(query, **params)
    for (pk,) in rows:
        yield from drop_file(pk)
    return len(rows)


def drop_stale_uploads(before: float) -> Script[int]:
    return (yield from _drop_found("stale_v1_uploads", before=before))


def drop_expired_files(now: float) -> Script[int]:
    return (yield from _drop_found("expired_v1_files", now=now))


def insert_batch(fields: dict[str, Any]) -> Script[int]:
    return int((yield q.value("insert_v1_batch", **fields)))


def get_batch(batch_id: str, tenant_id: str, dialect: str, owner: str | None
              ) -> Script[V1BatchRow | None]:
    row = yield q.one("v1_batch", id=batch_id, tenant_id=tenant_id, dialect=dialect,
                      owner=owner)
    return None if row is None else _batch(row)


def page_batches(tenant_id: str, dialect: str, owner: str | None, cursor_pk: int, limit: int,
                 ascending: bool) -> Script[list[V1BatchRow]]:
    if ascending:
        rows = yield q.rows("v1_batches_after", tenant_id=tenant_id, dialect=dialect,
                            owner=owner, after_pk=cursor_pk, limit=limit)
    else:
        rows = yield q.rows("v1_batches_before", tenant_id=tenant_id, dialect=dialect,
                            owner=owner, before_pk=cursor_pk, limit=limit)
    return [_batch(r) for r in rows]


def start_batch(pk: int, engine_batch_id: str, now: float) -> Script[None]:
    yield q.run("start_v1_batch", pk=pk, engine_batch_id=engine_batch_id, now=now)


def fail_batch(pk: int, errors: bytes, now: float) -> Script[None]:
    yield q.run("fail_v1_batch", pk=pk, errors=errors, now=now)


def for_finalize(pk: int) -> Script[tuple[str, str, str, str, bool] | None]:
    r = yield q.one("v1_batch_for_finalize", pk=pk)
    return None if r is None else (r[0], r[1], r[2], r[3], bool(r[4]))


def stale_validating(before: float) -> Script[list[tuple[int, str, str]]]:
    rows = yield q.rows("stale_validating_v1_batches", before=before)
    return [(r[0], r[1], r[2]) for r in rows]


def batch_pk(batch_id: str) -> Script[int | None]:
    found = yield q.value("v1_batch_pk", id=batch_id)
    return None if found is None else int(found)


def cancel_batch(pk: int, now: float) -> Script[int]:
    return int((yield q.run("cancel_v1_batch", pk=pk, now=now)))


def delete_batch(pk: int) -> Script[None]:
    yield q.run("delete_v1_batch", pk=pk)


def to_finalize(now: float, limit: int) -> Script[list[tuple[int, str]]]:
    rows = yield q.rows("v1_batches_to_finalize", now=now, limit=limit)
    return [(r[0], r[1]) for r in rows]


def claim_finalize(pk: int, finalizer: str, now: float, until: float) -> Script[bool]:
    """Claim the batch's finalization and drop what an earlier, interrupted one wrote."""
    if not (yield q.run("claim_v1_finalize", pk=pk, finalizer=finalizer, now=now, until=until)):
        return False
    for (file_pk,) in (yield q.rows("unpublished_v1_files_of_batch", batch_pk=pk)):
        yield from drop_file(file_pk)
    return True


def renew_finalize(pk: int, finalizer: str, until: float) -> Script[bool]:
    return bool((yield q.run("renew_v1_finalize", pk=pk, finalizer=finalizer, until=until)))


def end_batch(pk: int, finalizer: str, fields: dict[str, Any],
              files: list[tuple[int, int]]) -> Script[bool]:
    """Publish the batch's files (``(pk, bytes)``) and its final status, if still ours."""
    if not (yield q.run("end_v1_batch", pk=pk, finalizer=finalizer, **fields)):
        return False
    for file_pk, size in files:
        yield from publish_file(file_pk, size)
    return True


class FileOps(Runner):
    """Store operations of /v1/files and the /v1 batches (see :mod:`batchd.core.files`)."""

    async def insert_v1_file(self, **fields: Any) -> int:
        return await self._write(insert_file, fields)

    async def insert_v1_file_parts(self, file_pk: int, first_seq: int, parts: list[bytes]
                                   ) -> None:
        await self._write(insert_parts, file_pk, first_seq, parts)

    async def publish_v1_file(self, pk: int, size: int, *, purpose: str | None = None,
                              filename: str | None = None, expires_at: float | None = None
                              ) -> bool:
        """Make a file visible, with its size (and its purpose, name and expiry, if given
        now)."""
        return bool(await self._write(publish_file, pk, size, purpose, filename, expires_at))

    async def drop_v1_file(self, pk: int) -> None:
        await self._write(drop_file, pk)

    async def v1_file(self, file_id: str, *, tenant_id: str, owner: str | None
                      ) -> FileRow | None:
        return await self._read(get_file, file_id, tenant_id, owner)

    async def v1_files(self, *, tenant_id: str, owner: str | None, purpose: str | None,
                       cursor_pk: int, limit: int, ascending: bool) -> list[FileRow]:
        return await self._read(page_files, tenant_id, owner, purpose, cursor_pk, limit,
                                ascending)

    async def v1_file_parts(self, file_pk: int, *, after_seq: int, limit: int
                            ) -> list[tuple[int, bytes]]:
        return await self._read(file_parts, file_pk, after_seq, limit)

    async def drop_stale_v1_uploads(self, *, before: float) -> int:
        return await self._write(drop_stale_uploads, before)

    async def drop_expired_v1_files(self, *, now: float) -> int:
        """Drop (a bounded number of) files expired by ``now``; how many."""
        return await self._write(drop_expired_files, now)

    async def insert_v1_batch(self, **fields: Any) -> int:
        return await self._write(insert_batch, fields)

    async def v1_batch(self, batch_id: str, *, tenant_id: str, dialect: str,
                       owner: str | None) -> V1BatchRow | None:
        return await self._read(get_batch, batch_id, tenant_id, dialect, owner)

    async def v1_batches(self, *, tenant_id: str, dialect: str, owner: str | None,
                         cursor_pk: int, limit: int, ascending: bool) -> list[V1BatchRow]:
        return await self._read(page_batches, tenant_id, dialect, owner, cursor_pk, limit,
                                ascending)

    async def start_v1_batch(self, pk: int, *, engine_batch_id: str, now: float) -> None:
        await self._write(start_batch, pk, engine_batch_id, now)

    async def fail_v1_batch(self, pk: int, *, errors: bytes, now: float) -> None:
        await self._write(fail_batch, pk, errors, now)

    async def v1_batch_for_finalize(self, pk: int) -> tuple[str, str, str, str, bool] | None:
        """(id, engine batch id, tenant, owner, cancel asked) of a batch to finalize."""
        return await self._read(for_finalize, pk)

    async def stale_validating_v1_batches(self, *, before: float
                                          ) -> list[tuple[int, str, str]]:
        """``(pk, id, tenant)`` of batches left validating since before ``before``."""
        return await self._read(stale_validating, before)

    async def v1_batch_pk(self, batch_id: str) -> int | None:
        return await self._read(batch_pk, batch_id)

    async def cancel_v1_batch(self, pk: int, *, now: float) -> bool:
        return bool(await self._write(cancel_batch, pk, now))

    async def delete_v1_batch(self, pk: int) -> None:
        await self._write(delete_batch, pk)

    async def v1_batches_to_finalize(self, *, now: float, limit: int) -> list[tuple[int, str]]:
        return await self._read(to_finalize, now, limit)

    async def claim_v1_finalize(self, pk: int, *, finalizer: str, now: float, until: float
                                ) -> bool:
        return await self._write(claim_finalize, pk, finalizer, now, until)

    async def renew_v1_finalize(self, pk: int, *, finalizer: str, until: float) -> bool:
        return await self._write(renew_finalize, pk, finalizer, until)

    async def end_v1_batch(self, pk: int, *, finalizer: str, fields: dict[str, Any],
                           files: list[tuple[int, int]]) -> bool:
        return await self._write(end_batch, pk, finalizer, fields, files)
