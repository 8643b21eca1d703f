"""BatchManager: the engine's business operations for every dialect, in one place.

A facade: each operation is one of the services below, bound by name, so a dialect
needs one object and each module holds one concern:

- :mod:`batchd.core.access`: keys, tenants, tiers, who sees what;
- :mod:`batchd.core.taskset`: tasks and specs;
- :mod:`batchd.core.submit`: creating batches and adding items (tier batch size,
  quotas and metering, budget, backpressure), over :mod:`batchd.core.staging`;
- :mod:`batchd.core.browse`: reads;
- :mod:`batchd.core.control`: close, cancel, results handed out, plain-call metering;
- :mod:`batchd.core.deliveries`: the webhook outbox;
- :mod:`batchd.core.actions`: retry, pause and resume;
- :mod:`batchd.core.sessions` and :mod:`batchd.core.dashboard`: the dashboard's sessions
  and reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from batchd.core import access, quotas
from batchd.core.access import Access
from batchd.core.actions import Actions
from batchd.core.browse import Browse, TenantActivity
from batchd.core.control import Control
from batchd.core.dashboard import Dashboard
from batchd.core.deliveries import Deliveries
from batchd.core.fleet import FleetView
from batchd.core.paging import RecordRow
from batchd.core.quotas import Limits
from batchd.core.sessions import Sessions
from batchd.core.staging import Chunk, Run
from batchd.core.submit import Admission, Created, Submissions
from batchd.core.taskset import TaskSet, TaskSource
from batchd.tasks.registry import TaskRegistry

if TYPE_CHECKING:
    from batchd.core.db import Database

__all__ = [
    "Admission", "BatchManager", "Chunk", "Created", "RecordRow", "Run", "TaskSource",
    "TenantActivity",
]

Clock = Callable[[], float]


class BatchManager:
    """Business operations shared by every dialect.

    Args:
        store: durable state (the engine's :class:`batchd.core.db.Database`).
        registry: the tasks batches may use.
        clock: seconds since the epoch (injected in tests).
        on_new_work: called after items become runnable (wakes a local worker).
        tiers: the limits of each tier (:data:`batchd.core.quotas.DEFAULT_TIERS` if None).
        catalog: tasks defined over the API, looked up when ``registry`` lacks a name.
    """

    def __init__(
        self, *, store: Database, registry: TaskRegistry, clock: Clock = time.time,
        on_new_work: Callable[[], None] | None = None, ingest_flush_items: int = 5000,
        max_items_per_request: int = 10_000_000, tiers: Mapping[str, Limits] | None = None,
        catalog: TaskSource | None = None, key_cache_s: float = 1.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.catalog = catalog
        self.clock = clock
        self.on_new_work = on_new_work
        self.access = Access(store=store, clock=clock, tiers=tiers or quotas.DEFAULT_TIERS,
                             key_cache_s=key_cache_s)
        self.tasks = TaskSet(registry=registry, source=catalog, clock=clock)
        self.submissions = Submissions(
            store=store, access=self.access, tasks=self.tasks, clock=clock, notify=self._notify,
            flush_items=ingest_flush_items, max_items_per_request=max_items_per_request,
        )
        self.browse = Browse(store=store, access=self.access)
        self.control = Control(store=store, access=self.access, clock=clock,
                               notify=self._notify)
        self.deliveries = Deliveries(store=store, access=self.access)
        self.actions = Actions(store=store, access=self.access, clock=clock,
                               notify=self._notify)
        self.sessions = Sessions(store=store, access=self.access, clock=clock)
        self.dashboard = Dashboard(store=store, access=self.access, browse=self.browse,
                                   clock=clock)
        self.fleet = FleetView(store=store, clock=clock)
        self._bind()

    def _bind(self) -> None:
        # keys, tenants, tiers and scope
        self.bootstrap_admin = self.access.bootstrap_admin
        self.authenticate = self.access.authenticate
        self.create_tenant = self.access.create_tenant
        self.create_key = self.access.create_key
        self.list_keys = self.access.list_keys
        self.revoke_key = self.access.revoke_key
        self.limits_for = self.access.limits_for
        self.get_batch = self.access.batch
        self.batch_for = self.access.batch_for
        self.batch_query = access.batch_query
        self.batch_warnings = self.fleet.batch_warnings
        # tasks
        self.task = self.tasks.task
        self.find_task = self.tasks.find
        self.define_task = self.tasks.define
        self.sync_tasks = self.tasks.sync
        self.resolve_spec = self.tasks.resolve_spec
        # submissions
        self.check_batch_size = self.submissions.check_batch_size
        self.create_batch = self.submissions.create_batch
        self.create_runs = self.submissions.create_runs
        self.append_items = self.submissions.append_items
        self.add_chunks = self.submissions.add_chunks
        self.replay_if_known = self.submissions.replay_if_known
        self.idempotency_key_used = self.submissions.idempotency_key_used
        # reads
        self.list_batches = self.browse.list_batches
        self.page_batches = self.browse.page_batches
        self.batch_totals = self.browse.batch_totals
        self.tenant_activity = self.browse.tenant_activity
        self.list_items = self.browse.list_items
        self.items_of = self.browse.items_of
        self.get_item = self.browse.get_item
        self.item_at = self.browse.item_at
        self.iter_results = self.browse.iter_results
        self.item_ids = self.browse.item_ids
        self.item_rowids_by_group = self.browse.item_rowids_by_group
        self.iter_export_pages = self.browse.iter_export_pages
        self.watch = self.browse.watch
        self.usage = self.browse.usage
        self.usage_by_period = self.browse.usage_by_period
        # changes to running batches, and metering
        self.close_batch = self.control.close_batch
        self.cancel_batch = self.control.cancel_batch
        self.take_results = self.control.take_results
        self.meter = self.control.meter
        # operator actions: retry, pause, resume
        self.retry_items = self.actions.retry
        self.pause_batch = self.actions.pause
        self.resume_batch = self.actions.resume
        # the webhook outbox
        self.webhook_messages = self.deliveries.messages
        self.webhook_message = self.deliveries.message
        self.webhook_secret = self.deliveries.secret

    async def ping(self) -> None:
        """A round trip to the database; raises StoreError when it is unavailable."""
        await self.store.ping()

    def _notify(self) -> None:
        if self.on_new_work is not None:
            self.on_new_work()
