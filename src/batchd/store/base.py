"""The storage interface every backend implements (see tests/integration/test_store_contract.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from batchd.store.script import Script, T


class Store(ABC):
    """Durable state of tenants, keys, batches and items.

    Every write is one transaction; every state change is guarded by the
    transition table in :mod:`batchd.domain.states`; item outcomes are written only
    while the lease's fencing token matches.
    """

    #: Many processes claim at once, under row locks (PostgreSQL): a claim takes one
    #: transaction per batch, never holding two batch locks, and leases the items of a
    #: batch without a budget in one statement (``claim_unbudgeted``). Otherwise (one
    #: writer: SQLite) a whole claim is one transaction, step by step.
    concurrent_claims: ClassVar[bool] = False

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    async def run_read(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        """Run the transaction script ``script(*args, **kw)`` as a read (it writes nothing;
        it may run again on a fresh connection)."""

    @abstractmethod
    async def run_write(self, script: Callable[..., Script[T]], /, *args: Any, **kw: Any) -> T:
        """Run ``script(*args, **kw)`` in one write transaction. After a deadlock, a
        serialization failure or a connection lost before COMMIT, a fresh script runs
        again from the start."""

    async def reclaim_space(self) -> None:  # noqa: B027
        """Give the space that deleted rows and finished uploads' staging held back to the
        filesystem, as far as the backend can without waiting on other work: SQLite frees
        its free pages and truncates its WAL, PostgreSQL truncates its stage tables when
        no upload is in them. Best effort: a failure is logged, never raised.
        """

    async def subscribe_work(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Call ``callback`` whenever another process commits new items.

        Backends without notifications leave this a no-op; workers then poll.
        """
