"""The provider interface the AI job queue flushes to and polls (implemented in
:mod:`batchd.providers`, which sits above core: core knows only this interface)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from batchd.core.jobs import ResultKind
from batchd.domain import codec


class BatchProgress(StrEnum):
    """A provider batch's processing status, in Message Batches' words."""

    IN_PROGRESS = "in_progress"
    CANCELING = "canceling"
    ENDED = "ended"


@dataclass(slots=True)
class JobRequest:
    """One job as a flush hands it to a provider."""

    custom_id: str
    job_type: str
    payload: Any
    priority: int


@dataclass(slots=True)
class ProviderResult:
    """One request's outcome as the provider reports it, before pricing."""

    custom_id: str
    kind: ResultKind
    output: Any = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    reported_usd: float = 0.0  # what the work reported costing (local jobs), if anything
    processing_ms: int = 0
    finished_at: float | None = None
    model: str | None = None


@dataclass(slots=True)
class Fetched:
    """A provider batch's progress and the results it has for the jobs asked about."""

    progress: BatchProgress
    results: list[ProviderResult] = field(default_factory=list)


class Provider(ABC):
    """A batch API jobs are flushed to: the local engine, or an LLM provider's."""

    name: str
    model: str | None
    """The model its jobs are priced as (a row of the price table)."""

    @abstractmethod
    async def submit(self, *, tenant_id: str, requests: list[JobRequest]) -> str:
        """Create one batch of ``requests``; returns the provider's batch id.

        Raises:
            ProviderError: the provider refused the batch (nothing was created).
        """

    @abstractmethod
    async def fetch(self, batch_id: str, *, waiting: set[str]) -> Fetched:
        """The batch's progress, and the results available for the custom ids in
        ``waiting`` (all of them once it ended; a provider may give some earlier)."""

    @abstractmethod
    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to stop the batch (its unfinished requests end canceled)."""

    def estimate_tokens(self, requests: list[JobRequest]) -> int:
        """Input tokens the requests will take, roughly (4 bytes of JSON a token)."""
        return sum(len(codec.dumps(r.payload)) // 4 + 1 for r in requests)

    async def close(self) -> None:  # noqa: B027
        """Release connections."""
