"""Task groups and task runs (Parallel's Task API) over the engine.

A group is an open batch of the task ``task_spec_run`` (:mod:`batchd.tasks.taskspec`),
never closed, so runs can be added at any time; a run is an item whose input is the run
as submitted (its ``input``, ``processor``, ``task_spec``, ``metadata``). A run made on
its own is a closed batch of one item. What a run does, what it costs, how often it is
tried and when an answer fails its schema are the task's and the engine's rules; here
are the group's: adding runs (checked, all or nothing), its status, the journal of ended
runs that orders its events stream (:mod:`batchd.core.txn.taskgroups`), and waiting for
a run to end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from batchd.core.manager import BatchManager, Run
from batchd.core.staging import check_records, run_item
from batchd.core.txn.taskgroups import Journaled, TaskGroupOps
from batchd.domain import errors
from batchd.domain.models import Batch, BatchSpec, Item, Principal, item_public_id
from batchd.domain.states import TERMINAL_ITEM
from batchd.settings import Settings
from batchd.tasks import taskspec

MARKER = "task_group"  # metadata key of the batches made here: {"kind", "metadata"}
GROUP, RUN = "group", "run"
POLL_S = (0.05, 0.5)  # first and longest wait between looks at a group or run
PAGE = 500


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """The group's status changed (or the stream starts or ends); ``cursor``: the
    journal position the stream has reached."""

    batch: Batch
    cursor: int


@dataclass(frozen=True, slots=True)
class RunEnded:
    entry: Journaled


def kind_of(batch: Batch) -> str | None:
    """``group`` or ``run`` for a batch made here, else None."""
    found = batch.metadata.get(MARKER)
    return found.get("kind") if isinstance(found, dict) else None


def is_active(batch: Batch) -> bool:
    return batch.n_queued + batch.n_running > 0


def ended(batch: Batch) -> int:
    return batch.n_succeeded + batch.n_failed + batch.n_cancelled


class TaskGroups:
    """Groups of runs and single runs, for the ``/v1/tasks`` dialect."""

    def __init__(self, *, manager: BatchManager, settings: Settings) -> None:
        self.mgr = manager
        self.ops = TaskGroupOps(manager.store.store)
        self.settings = settings

    def _spec(self, kind: str, metadata: dict[str, Any] | None, *, close: bool) -> BatchSpec:
        s = self.settings
        return BatchSpec(
            task=taskspec.NAME, version=taskspec.VERSION, parallelism=s.default_parallelism,
            max_attempts=s.parallel_max_attempts, retry_backoff_s=s.retry_backoff_s,
            metadata={MARKER: {"kind": kind, "metadata": metadata}}, close=close,
            dialect="parallel",
        )

    async def _of_kind(self, principal: Principal, batch_id: str, kind: str) -> Batch:
        batch = await self.mgr.get_batch(principal, batch_id)
        if kind_of(batch) != kind:
            raise errors.NotFound(f"{'task group' if kind == GROUP else 'run'} {batch_id} "
                                  "not found")
        return batch

    async def create_group(self, principal: Principal, metadata: dict[str, Any] | None
                           ) -> Batch:
        async def nothing() -> AsyncIterator[list[Any]]:
            return
            yield

        created = await self.mgr.create_batch(principal, self._spec(GROUP, metadata,
                                                                    close=False), nothing())
        return created.batch

    async def group(self, principal: Principal, group_id: str) -> Batch:
        return await self._of_kind(principal, group_id, GROUP)

    def check_runs(self, runs: list[dict[str, Any]]) -> None:
        """Raises InvalidRecord for the first run the task refuses (an unknown processor,
        an input its schema refuses)."""
        for i, run in enumerate(runs):
            problem = taskspec.unknown_processor(run.get("processor"), self.mgr.registry)
            if problem is not None:
                raise errors.InvalidRecord(f"run {i}: {problem}", index=i, problem=problem,
                                           field="processor")
        check_records(self.mgr.task(taskspec.NAME, taskspec.VERSION), runs, 0)

    async def add_runs(self, principal: Principal, group_id: str, runs: list[dict[str, Any]],
                       *, webhook_event: str | None = None) -> tuple[Batch, list[str]]:
        """Add runs to a group, all or nothing; the group and the new runs' ids, in order.
        A run's ``webhook`` is notified (an event of type ``webhook_event``) once it ends."""
        batch = await self.group(principal, group_id)
        self.check_runs(runs)
        task = self.mgr.task(batch.task, batch.version)
        spec = BatchSpec(task=batch.task, version=batch.version)
        token = secrets.token_hex(8)
        items = [dataclasses.replace(run_item(task, spec, i, _run(r), webhook_event),
                                     ext_id=f"{token}.{i}") for i, r in enumerate(runs)]
        await self.mgr.submissions.append_staged(principal, batch, items, what="runs")
        found = await self.ops.runs_added_since(batch.id, seq=batch.n_total)
        ids = [item_public_id(rowid) for rowid, ext in found if ext.startswith(token + ".")]
        return await self.mgr.get_batch(principal, batch.id), ids

    async def create_run(self, principal: Principal, run: dict[str, Any], *,
                         webhook_event: str | None = None) -> tuple[Batch, Item]:
        """A run on its own: a closed batch of one item."""
        self.check_runs([run])
        metadata = run.get("metadata") if isinstance(run.get("metadata"), dict) else None
        created = await self.mgr.create_runs(principal, self._spec(RUN, metadata, close=True),
                                             [_run(run)], webhook_event=webhook_event)
        items = await self.mgr.items_of(created.batch)
        return created.batch, items[0]

    async def run(self, principal: Principal, run_id: str, *, group_id: str | None = None
                  ) -> tuple[Batch, Item]:
        """A run (of the group ``group_id``, when given), by its id."""
        batch, item = await self.mgr.item_at(principal, run_id)
        if kind_of(batch) is None or (group_id is not None and batch.id != group_id):
            raise errors.NotFound(f"run {run_id} not found")
        return batch, item

    async def wait_run(self, principal: Principal, run_id: str, *, timeout_s: float,
                       gone: Callable[[], Awaitable[bool]]) -> tuple[Batch, Item, bool]:
        """The run once it has ended, or as it is after ``timeout_s`` (or when the caller
        is ``gone``); the flag says whether it ended."""
        deadline = time.monotonic() + timeout_s
        wait = POLL_S[0]
        while True:
            batch, item = await self.run(principal, run_id)
            if item.status in TERMINAL_ITEM:
                return batch, item, True
            left = deadline - time.monotonic()
            if left <= 0 or await gone():
                return batch, item, False
            await asyncio.sleep(min(wait, left))
            wait = min(wait * 2, POLL_S[1])

    async def events(self, principal: Principal, group_id: str, *, after: int,
                     timeout_s: float | None) -> AsyncIterator[StatusEvent | RunEnded]:
        """The group's status, then each run that ends after journal position ``after``,
        in journal order, with the status whenever it changes; it ends (with the status)
        once no run is active and every ended run was sent, or after ``timeout_s``."""
        batch = await self.group(principal, group_id)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        cursor, journal_end = after, 0
        yield StatusEvent(batch, cursor)
        seen = _status_key(batch)
        wait = POLL_S[0]
        while True:
            if ended(batch) > journal_end:
                journal_end = await self.ops.journal_runs(batch.id)
            sent = False
            while cursor < journal_end:
                page = await self.ops.journaled_runs(batch.id, after=cursor, limit=PAGE)
                if not page:
                    break
                for entry in page:
                    yield RunEnded(entry)
                cursor, sent = page[-1].n, True
            if not is_active(batch) and cursor >= journal_end:
                yield StatusEvent(batch, cursor)
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            if not sent:
                await asyncio.sleep(wait)
                wait = min(wait * 2, POLL_S[1])
            else:
                wait = POLL_S[0]
            batch = await self.mgr.get_batch(principal, batch.id)
            if _status_key(batch) != seen:
                seen = _status_key(batch)
                yield StatusEvent(batch, cursor)

    async def runs(self, principal: Principal, group_id: str, *, after_seq: int,
                   status: str | None) -> AsyncIterator[Item]:
        """Every run of the group after ``after_seq``, in the order they were added."""
        batch = await self.group(principal, group_id)
        while True:
            page = await self.mgr.store.list_items(batch.id, status=status,
                                                   after_seq=after_seq, limit=PAGE)
            for item in page:
                yield item
            if len(page) < PAGE:
                return
            after_seq = page[-1].seq


def webhook_url(run: dict[str, Any]) -> str | None:
    hook = run.get("webhook")
    url = hook.get("url") if isinstance(hook, dict) else None
    return url if isinstance(url, str) else None


def _run(run: dict[str, Any]) -> Run:
    return Run(input=run, webhook_url=webhook_url(run))


def _status_key(batch: Batch) -> tuple[int, ...]:
    return (batch.n_total, batch.n_queued, batch.n_running, batch.n_succeeded,
            batch.n_failed, batch.n_cancelled)

