"""Task groups' store transactions: the journal of ended runs, and the runs just added.

The journal numbers a group's ended runs in the order they were seen to end; the numbers
are the cursor of the group's events stream. One journaling runs at a time per batch
(the batch row is locked; SQLite has one writer), and each commits its numbers at once,
so a reader never sees a number while a lower one is still to come: resuming after a
number misses nothing and repeats nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchd.core.txn.reads import item_row
from batchd.core.txn.runner import Runner
from batchd.domain.models import Item
from batchd.store import script as q
from batchd.store.script import Script


@dataclass(frozen=True, slots=True)
class Journaled:
    """A run's entry in its group's journal."""

    n: int
    item: Item


def journal(batch_id: str) -> Script[int]:
    row = yield q.one("run_journal_batch", batch_id)  # locks the batch row (PostgreSQL)
    if row is None:
        return 0
    pk, ended = row
    end = int((yield q.value("run_journal_end", pk)))
    if ended > end:
        end += yield q.run("journal_ended_runs", pk=pk, base=end)
    return end


def journaled(batch_id: str, after: int, limit: int) -> Script[list[Journaled]]:
    rows = yield q.rows("journaled_runs", batch_id=batch_id, after=after, limit=limit)
    return [Journaled(n=r[0], item=item_row(r[1:], batch_id)) for r in rows]


def added_since(batch_id: str, seq: int) -> Script[list[tuple[int, str]]]:
    rows = yield q.rows("runs_added_since", batch_id=batch_id, seq=seq)
    return [(r[0], r[1]) for r in rows]


class TaskGroupOps(Runner):
    async def journal_runs(self, batch_id: str) -> int:
        """Journal the batch's runs that ended since the last time; the journal's end."""
        return await self._write(journal, batch_id)

    async def journaled_runs(self, batch_id: str, *, after: int, limit: int
                             ) -> list[Journaled]:
        """Journal entries after ``after``, in order, with their items."""
        return await self._read(journaled, batch_id, after, limit)

    async def runs_added_since(self, batch_id: str, *, seq: int) -> list[tuple[int, str]]:
        """``(rowid, ext_id)`` of the batch's items from ``seq`` on, in seq order."""
        return await self._read(added_since, batch_id, seq)
