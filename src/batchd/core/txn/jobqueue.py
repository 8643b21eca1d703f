"""The AI job queue's jobs and provider batches."""

from __future__ import annotations

from batchd.core.txn.runner import Runner


class JobQueueOps(Runner):
    pass
