"""Usage metering (in the transactions of its effects) and the batch event log."""

from __future__ import annotations

from batchd.core.txn.runner import Runner


class UsageOps(Runner):
    pass
