"""Finalizing ``/v1/batches`` batches: once the engine batch has ended, its results are
written as the batch's output and error files, and the batch takes its final status.

One process finalizes a batch at a time (a lease in ``v1_batches``, renewed while it
writes); a finalization cut short (the process died) is started again from the beginning
by the next claimer, which first drops the files the earlier one had begun. The files and
the final status are published in one transaction, so a request's line is in exactly
one of the two files, once. The files expire as the batch asked (``output_expires_after``)
or as ``batch_output`` files do; the same loop sweeps expired files away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from batchd.core.files import Files, PartWriter
from batchd.domain import errors
from batchd.domain.models import new_id
from batchd.domain.records import ExportRow

if TYPE_CHECKING:
    from batchd.core.db import Database

log = logging.getLogger(__name__)

LEASE_S = 30.0
INTERRUPTED = orjson.dumps([{
    "code": "validation_interrupted", "line": None, "param": None,
    "message": "The server stopped while it validated the input file; create the batch "
               "again."}])
PAGE_SEQS = 1000
SWEEP_ROUNDS = 20  # expired files are dropped every this many rounds (read as gone at once)
# A result's line in the output file (True) or the error file (False); ``ended`` is the
# engine batch's final status (``expired``, ``cancelled``, …).
Render = Callable[[ExportRow, str], tuple[bool, bytes]]


class Finalizer:
    """Finds ended ``/v1`` batches and writes their files (see the module)."""

    def __init__(self, *, store: Database, render: Render, clock: Callable[[], float],
                 interval_s: float, staging_ttl_s: float, files: Files) -> None:
        self.store = store
        self.files = files
        self.render = render
        self.clock = clock
        self.interval_s = interval_s
        self.staging_ttl_s = staging_ttl_s
        self.owner = new_id("fin")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _loop(self) -> None:
        rounds = 0
        while True:
            try:
                await self.run_once()
                if rounds % 120 == 0:
                    await self.recover(before=self.clock() - self.staging_ttl_s)
                if rounds % SWEEP_ROUNDS == 0:
                    await self.files.drop_expired()
            except errors.StoreError as exc:  # the database comes back by itself
                log.warning("finalizing /v1 batches failed (%s); retrying", exc.message)
            except Exception:  # the loop must outlive any one failure
                log.exception("finalizing /v1 batches failed; retrying")
            rounds += 1
            await asyncio.sleep(self.interval_s)

    async def recover(self, *, before: float) -> None:
        """Settle what a stopped server left half done before ``before``: uploads never
        finished are dropped; a batch left validating goes on if its engine batch was
        committed (its idempotency key is the batch's id), else fails."""
        await self.store.drop_stale_v1_uploads(before=before)
        for pk, batch_id, tenant_id in await self.store.stale_validating_v1_batches(
                before=before):
            engine = await self.store.find_batch_by_idempotency(tenant_id, batch_id)
            if engine is not None:
                await self.store.start_v1_batch(pk, engine_batch_id=engine.id,
                                                now=self.clock())
            else:
                await self.store.fail_v1_batch(pk, errors=INTERRUPTED, now=self.clock())

    async def run_once(self) -> int:
        """Finalize what has ended now; how many batches."""
        done = 0
        for pk, engine_status in await self.store.v1_batches_to_finalize(now=self.clock(),
                                                                          limit=8):
            now = self.clock()
            if await self.store.claim_v1_finalize(pk, finalizer=self.owner, now=now,
                                                  until=now + LEASE_S):
                done += await self._finalize(pk, engine_status)
        return done

    async def _finalize(self, pk: int, engine_status: str) -> int:
        row = await self._batch(pk)
        if row is None:
            return 0
        batch_id, engine_id, tenant_id, owner, cancelling = row
        engine = await self.store.get_batch(engine_id, tenant_id=tenant_id)
        v1 = engine.metadata.get("v1") if engine is not None else None
        expiry_s = v1.get("output_expires_s") if isinstance(v1, dict) else None
        out = await self._new_file(pk, batch_id, tenant_id, owner, "output", expiry_s)
        err = await self._new_file(pk, batch_id, tenant_id, owner, "error", expiry_s)
        last = await self.store.last_item_seq(engine_id)
        after = -1
        renew_at = self.clock() + LEASE_S / 3
        while last is not None and after < last:
            upto = min(after + PAGE_SEQS, last)
            for r in await self.store.export_rows_between(engine_id, after_seq=after,
                                                          upto_seq=upto):
                good, line = self.render(r, engine_status)
                await (out if good else err).write(line)
            after = upto
            if self.clock() > renew_at:
                if not await self.store.renew_v1_finalize(
                        pk, finalizer=self.owner, until=self.clock() + LEASE_S):
                    return 0  # another process took it over
                renew_at = self.clock() + LEASE_S / 3
        await out.close()
        await err.close()
        return int(await self._end(pk, engine_status, cancelling, out, err))

    async def _batch(self, pk: int) -> tuple[str, str, str, str, bool] | None:
        found = await self.store.v1_batch_for_finalize(pk)
        return found

    async def _new_file(self, pk: int, batch_id: str, tenant_id: str, owner: str,
                        kind: str, expiry_s: float | None) -> _NamedWriter:
        from batchd.core.files import new_file_id

        file_id = new_file_id()
        now = self.clock()
        file_pk = await self.store.insert_v1_file(
            id=file_id, tenant_id=tenant_id, owner=owner, purpose="batch_output",
            filename=f"{batch_id}_{kind}.jsonl", batch_pk=pk, created_at=now,
            expires_at=self.files.expires_at("batch_output", now, expiry_s))
        return _NamedWriter(self.store, file_pk, file_id)

    async def _end(self, pk: int, engine_status: str, cancelling: bool, out: _NamedWriter,
                   err: _NamedWriter) -> bool:
        now = self.clock()
        if engine_status == "expired":
            status = "expired"
        elif cancelling or engine_status == "cancelled":
            status = "cancelled"
        else:
            status = "completed"
        fields = {"status": status,
                  "output_file_id": out.file_id if out.size else None,
                  "error_file_id": err.file_id if err.size else None,
                  "completed_at": now if status == "completed" else None,
                  "expired_at": now if status == "expired" else None,
                  "cancelled_at": now if status == "cancelled" else None,
                  "failed_at": None}
        files = [(w.file_pk, w.size) for w in (out, err) if w.size]
        ended = await self.store.end_v1_batch(pk, finalizer=self.owner, fields=fields,
                                              files=files)
        for w in (out, err):
            if not w.size:  # nothing to publish: the empty file goes
                await self.store.drop_v1_file(w.file_pk)
        return ended


class _NamedWriter(PartWriter):
    def __init__(self, store: Database, file_pk: int, file_id: str) -> None:
        super().__init__(store, file_pk)
        self.file_id = file_id
