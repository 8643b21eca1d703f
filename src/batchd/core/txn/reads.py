"""Reading batches, items, results pages and events."""

from __future__ import annotations

from batchd.core.txn.runner import Runner


class ReadOps(Runner):
    pass
