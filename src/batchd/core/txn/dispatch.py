"""Handing work to workers and taking their outcomes: claim, finish, heartbeat, reap."""

from __future__ import annotations

from batchd.core.txn.runner import Runner


class DispatchOps(Runner):
    pass
