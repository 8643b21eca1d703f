"""A batch's life after intake: stop (cancel, fail-fast, budget, expiry), close, finish."""

from __future__ import annotations

from batchd.core.txn.runner import Runner


class LifecycleOps(Runner):
    pass
