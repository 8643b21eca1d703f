"""The engine's view of its database: one method per store operation, run as core scripts.

:class:`Database` wraps a :class:`batchd.store.base.Store` (a driver: connections,
transactions, named SQL) and gives the rest of batchd the operations it needs
(``get_batch``, ``claim_items``, …). Each is a transaction script from
:mod:`batchd.core.txn`, so the rules inside a transaction are written once for every
backend.
"""

from __future__ import annotations

from collections.abc import Callable

from batchd.core.txn.actions import ActionOps
from batchd.core.txn.dashboard import DashboardOps
from batchd.core.txn.dispatch import DispatchOps
from batchd.core.txn.files import FileOps
from batchd.core.txn.fleet import FleetOps
from batchd.core.txn.intake import IntakeOps
from batchd.core.txn.jobqueue import JobQueueOps
from batchd.core.txn.keys import KeyOps
from batchd.core.txn.lifecycle import LifecycleOps
from batchd.core.txn.reads import ReadOps
from batchd.core.txn.services import ServiceFileOps
from batchd.core.txn.sessions import SessionOps
from batchd.core.txn.taskdefs import TaskDefOps
from batchd.core.txn.upstreams import UpstreamOps
from batchd.core.txn.usage import UsageOps
from batchd.core.txn.webhooks import WebhookOps
from batchd.store import open_store


class Database(
    KeyOps, IntakeOps, ReadOps, DispatchOps, LifecycleOps, UsageOps, JobQueueOps, WebhookOps,
    TaskDefOps, FleetOps, ActionOps, SessionOps, UpstreamOps, FileOps, DashboardOps,
    ServiceFileOps,
):
    """Every store operation of the engine, over one backend."""

    async def open(self) -> None:
        """Connect and apply pending migrations."""
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def ping(self) -> None:
        await self.store.ping()

    async def subscribe_work(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever another process commits new items (PostgreSQL's
        NOTIFY); without notifications workers poll."""
        await self.store.subscribe_work(callback)

    @property
    def concurrent_claims(self) -> bool:
        return self.store.concurrent_claims


def open_database(database_url: str, **kwargs: object) -> Database:
    """The database at ``database_url`` (``sqlite:///path`` or ``postgresql://…``)."""
    return Database(open_store(database_url, **kwargs))
