"""The run log the test tasks write (``BATCHD_TEST_RUN_LOG``), read back.

Each line is ``item_id attempt pid what unix_time``: ``what`` is ``run`` for
``square``, ``start``/``end`` for ``tracked``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """One line of the run log."""

    item_id: str
    attempt: int
    pid: int
    what: str
    at: float


def read_runs(path: Path, *, offset: int = 0) -> list[Run]:
    """Every complete line from byte ``offset`` on; none if no task has run yet."""
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode().split("\n")[:-1]  # the last: empty, or still being written
    runs = []
    for line in lines:
        item_id, attempt, pid, what, at = line.split()
        runs.append(Run(item_id, int(attempt), int(pid), what, float(at)))
    return runs


def runs_by_item(runs: list[Run], what: str) -> dict[str, list[Run]]:
    """The ``what`` lines grouped by item, in log order."""
    by_item: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.what == what:
            by_item[r.item_id].append(r)
    return by_item
