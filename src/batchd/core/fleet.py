"""The processes sharing one database: what each claims, and what each lacks.

Every server and worker announces itself while it runs: a row refreshed every
``BATCHD_ANNOUNCE_INTERVAL_S`` (after syncing the tasks defined over the API), taken
as gone once it missed three refreshes, deleted when the process stops. It says the
process's role, the tasks it claims (:func:`batchd.core.scheduling.claimable`) and
the settings that must be alike on every process (:data:`SHARED`). From those rows
core decides, here only:

- :meth:`FleetView.batch_warnings`: a batch whose items wait for a task that no
  running process claims (``task_not_served``);
- :func:`lacking`: what a starting process lacks that the others have, one line per
  setting, logged by :meth:`Membership.join`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import orjson

from batchd.core import scheduling
from batchd.domain import errors, upstreams
from batchd.domain.models import Batch, new_id
from batchd.settings import Settings
from batchd.tasks.registry import TaskRegistry

if TYPE_CHECKING:
    from batchd.core.db import Database

log = logging.getLogger(__name__)

MISSED_ANNOUNCEMENTS = 3  # a process not seen for this many of its intervals is gone
FORGET_AFTER_S = 3600.0  # and its row is deleted once it has been gone this long
VIEW_TTL_S = 1.0  # a read of the announcements serves batch warnings this long

try:
    VERSION = metadata.version("batchd")  # not batchd.__version__: that package is the API's
except metadata.PackageNotFoundError:
    VERSION = "unknown"

SERVER = "server"  # the API alone (batchd serve --no-worker)
WORKER = "worker"  # batchd worker
SERVER_AND_WORKER = "server+worker"  # batchd serve


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a running process says of itself."""

    id: str
    role: str
    host: str
    pid: int
    version: str
    claims: scheduling.Claimable | None  # None: it claims nothing (the API alone)
    settings: dict[str, Any]
    interval_s: float
    started_at: float = 0.0
    seen_at: float = 0.0

    def alive(self, now: float) -> bool:
        return now - self.seen_at <= MISSED_ANNOUNCEMENTS * self.interval_s

    @property
    def label(self) -> str:
        return f"{self.role} {self.id} on {self.host} (pid {self.pid})"

    @property
    def kind(self) -> str:
        """``server`` or ``worker``, as a line addressed to this process names it."""
        return WORKER if self.role == WORKER else SERVER

    def dump(self) -> bytes:
        c = self.claims
        return orjson.dumps({
            "role": self.role, "host": self.host, "pid": self.pid, "version": self.version,
            "claims": None if c is None else {"tasks": list(zip(c.names, c.versions,
                                                                strict=True)),
                                              "kinds": list(c.kinds)},
            "settings": self.settings, "interval_s": self.interval_s,
        })

    @classmethod
    def load(cls, row: tuple[str, bytes, float, float]) -> Announcement | None:
        """The announcement of a ``processes`` row; None for one it cannot read (written
        by another version of batchd, say)."""
        pid, info, started_at, seen_at = row
        try:
            d = orjson.loads(info)
            c = d["claims"]
            claims = None if c is None else scheduling.Claimable(
                names=tuple(t[0] for t in c["tasks"]), versions=tuple(t[1] for t in c["tasks"]),
                kinds=tuple(c["kinds"]))
            return cls(id=pid, role=d["role"], host=d["host"], pid=d["pid"],
                       version=d["version"], claims=claims, settings=d["settings"],
                       interval_s=float(d["interval_s"]), started_at=started_at,
                       seen_at=seen_at)
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, ValueError):
            return None


def shared_settings(settings: Settings) -> dict[str, Any]:
    """The settings of :data:`SHARED`, as a process announces them (secrets only as set
    or not)."""
    return {
        "tasks": settings.task_modules(),
        "outbound_allow": sorted({e.strip().lower() for e in settings.outbound_allow.split(",")
                                  if e.strip()}),
        "llm_base_url": settings.llm_base_url,
        "llm_api_key": settings.llm_api_key is not None,
        "llm_prices": sorted(settings.llm_prices),
        "upstreams": upstreams.Routes(upstreams.parse(settings.upstreams)).models(),
    }


@dataclass(frozen=True, slots=True)
class Shared:
    """A setting every process must have that some process has: the line a process
    without it logs (``{who}``: the processes that have it; ``{theirs}``: what they have
    that this one lacks; ``{mine}``: this one's value; ``{me}``: server or worker)."""

    key: str
    env: str
    line: str
    runs_tasks: bool = False  # only a process that runs items needs it

    def lacks(self, mine: Any, theirs: Any, default: Any) -> list[str]:
        """What ``theirs`` has in use that ``mine`` lacks (a value differing from the
        default is in use)."""
        if isinstance(theirs, list):
            return [str(v) for v in theirs if v not in (mine or [])]
        if theirs is None or theirs in (default, mine):
            return []
        return [str(theirs)]


SHARED = (
    Shared("tasks", "BATCHD_TASKS",
           "{who} loads {theirs}; this {me} does not: their tasks are unknown here (a worker "
           "leaves their items to the processes that have them, a server refuses their "
           "batches)"),
    Shared("outbound_allow", "BATCHD_OUTBOUND_ALLOW",
           "{who} allows {theirs}; this {me} does not: webhook deliveries, http tasks and "
           "llm calls to those addresses fail from here"),
    Shared("llm_base_url", "BATCHD_LLM_BASE_URL",
           "{who} sends llm tasks to {theirs}; this {me} sends them to {mine}",
           runs_tasks=True),
    Shared("llm_api_key", "BATCHD_LLM_API_KEY",
           "{who} has it set; this {me} does not: llm tasks run here are sent without a key",
           runs_tasks=True),
    Shared("llm_prices", "BATCHD_LLM_PRICES",
           "{who} prices {theirs}; this {me} does not: llm items of those models run here "
           "are priced from the default table, or not at all", runs_tasks=True),
    Shared("upstreams", "BATCHD_UPSTREAMS",
           "{who} sends the models {theirs} to model upstreams; this {me} does not: /v1 "
           "requests for them run here fail as model_not_found", runs_tasks=True),
)
_DEFAULTS = shared_settings(Settings.model_construct())


def lacking(me: Announcement, others: Iterable[Announcement]) -> list[str]:
    """One line per setting of :data:`SHARED` that ``others`` have in use and ``me``
    lacks, naming the setting, who has it, what it is and what fails without it."""
    others = list(others)
    lines = []
    for s in SHARED:
        if s.runs_tasks and me.claims is None:
            continue
        who: list[str] = []
        theirs: list[str] = []
        for other in others:
            missing = s.lacks(me.settings.get(s.key), other.settings.get(s.key),
                              _DEFAULTS[s.key])
            if missing:
                who.append(other.label)
                theirs.extend(m for m in missing if m not in theirs)
        if who:
            more = f" and {len(who) - 1} more" if len(who) > 1 else ""
            lines.append(f"{s.env}: " + s.line.format(
                who=who[0] + more, theirs=", ".join(repr(t) for t in theirs),
                mine=me.settings.get(s.key), me=me.kind))
    return lines


def waits_for_task(
    batch: Batch, claimers: Sequence[Announcement], *, defined_kind: str | None = None,
) -> bool:
    """Whether ``batch`` has items waiting that none of ``claimers`` (the running
    processes that claim) would claim: its task at its version is not theirs."""
    if batch.is_terminal or batch.n_queued <= 0:
        return False
    return not any(p.claims is not None and p.claims.covers(batch.task, batch.version,
                                                             defined_kind=defined_kind)
                   for p in claimers)


def task_warning(batch: Batch, claimers: int) -> dict[str, Any]:
    """The ``task_not_served`` warning of a batch that :func:`waits_for_task`."""
    if claimers == 0:
        message = ("no worker is running: the batch's items wait until one starts "
                   "(batchd worker, or batchd serve without --no-worker)")
    else:
        message = (f"none of the {claimers} running workers has task {batch.task!r} version "
                   f"{batch.version!r}: the batch's items wait for one that registers it "
                   f"(start it with BATCHD_TASKS naming the module that defines the task)")
    return {"code": "task_not_served", "message": message, "task": batch.task,
            "version": batch.version, "workers": claimers}


@dataclass(slots=True)
class FleetView:
    """The running processes as announced, read at most once per :data:`VIEW_TTL_S`."""

    store: Database
    clock: Callable[[], float] = time.time
    _read_at: float = -1e18
    _live: list[Announcement] = field(default_factory=list)

    async def live(self) -> list[Announcement]:
        if time.monotonic() - self._read_at > VIEW_TTL_S:
            now = self.clock()
            found = (Announcement.load(r) for r in await self.store.processes())
            self._live = [a for a in found if a is not None and a.alive(now)]
            self._read_at = time.monotonic()
        return self._live

    async def batch_warnings(self, batch: Batch) -> list[dict[str, Any]]:
        """What a batch's reader should know: its items wait for a task that no running
        process claims."""
        if batch.is_terminal or batch.n_queued <= 0:
            return []
        claimers = [p for p in await self.live() if p.claims is not None]
        if not waits_for_task(batch, claimers):
            return []
        if claimers:  # a task defined over the API may be claimed by every process
            kind = await self.store.defined_task_kind(batch.task, batch.version)
            if kind is not None and not waits_for_task(batch, claimers, defined_kind=kind):
                return []
        return [task_warning(batch, len(claimers))]


class Membership:
    """This process among those sharing the database: announces itself while it runs.

    Args:
        store: the database.
        registry: the tasks this process has (what it claims, if it runs a worker).
        settings: its settings (the interval; what it announces of them).
        role: :data:`SERVER`, :data:`WORKER` or :data:`SERVER_AND_WORKER`.
        process_id: its id (a worker's owner id); a new one when omitted.
        sync: called before each refresh: registers tasks defined over the API since.
    """

    def __init__(
        self, *, store: Database, registry: TaskRegistry, settings: Settings, role: str,
        process_id: str | None = None, clock: Callable[[], float] = time.time,
        sync: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.role = role
        self.id = process_id or new_id("srv")
        self.clock = clock
        self.sync = sync
        self.started_at = clock()
        self._loop: asyncio.Task[None] | None = None

    def announcement(self) -> Announcement:
        claims = None if self.role == SERVER else scheduling.claimable(self.registry)
        return Announcement(
            id=self.id, role=self.role, host=socket.gethostname(), pid=os.getpid(),
            version=VERSION, claims=claims, settings=shared_settings(self.settings),
            interval_s=self.settings.announce_interval_s, started_at=self.started_at,
        )

    async def join(self) -> list[str]:
        """Announce this process, log a line per shared setting it lacks that the others
        have (:func:`lacking`) and keep announcing; the lines logged."""
        me = await self._announce()
        now = self.clock()
        others = [a for a in map(Announcement.load, await self.store.processes())
                  if a is not None and a.id != self.id and a.alive(now)]
        lines = lacking(me, others)
        for line in lines:
            log.warning("%s", line)
        self._loop = asyncio.create_task(self._refresh())
        return lines

    async def leave(self) -> None:
        """Stop announcing and remove this process's row."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        try:
            await self.store.forget_process(self.id)
        except errors.BatchdError as exc:  # gone from the view after its interval anyway
            log.warning("could not remove this process's announcement (%s)", exc.message)

    async def _announce(self) -> Announcement:
        me = self.announcement()
        now = self.clock()
        await self.store.announce_process(self.id, info=me.dump(), now=now,
                                          forget_before=now - FORGET_AFTER_S)
        return me

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.settings.announce_interval_s)
            try:
                if self.sync is not None:
                    await self.sync()
                await self._announce()
            except errors.BatchdError as exc:
                log.warning("could not announce this process (%s); retrying", exc.message)
            except Exception:  # the loop must outlive any one failure
                log.exception("could not announce this process; retrying")
