"""Task definitions made over the API."""

from __future__ import annotations

from batchd.core.txn.runner import Runner


class TaskDefOps(Runner):
    pass
