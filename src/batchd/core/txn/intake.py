"""Creating batches and adding items: stage, then commit or discard."""

from __future__ import annotations

from batchd.core.txn.runner import Runner


class IntakeOps(Runner):
    pass
