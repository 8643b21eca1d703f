"""Request bodies of the AI queue dialect (seed 003), with the document's bounds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from batchd.api.openapi import TIME_OR_EPOCH


class EnqueueRequest(BaseModel):
    job_type: str = Field(description="Type of batch job (a registered task).")
    payload: dict[str, Any] = Field(default_factory=dict, description="Job payload/parameters")
    priority: int = Field(default=50, ge=0, le=100, strict=True,
                          description="Job priority (0-100, higher = more urgent)")
    run_after: datetime | None = Field(
        default=None, description="Don't run until this time (optional delay)",
        json_schema_extra=TIME_OR_EPOCH,
    )
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=255,
        description="Unique key for idempotent job creation",
    )

    def run_after_ts(self) -> float | None:
        if self.run_after is None:
            return None
        when = self.run_after
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class FlushRequest(BaseModel):
    max_jobs: int = Field(default=100, ge=1, le=10_000, strict=True,
                          description="Maximum jobs to include in batch")
    job_types: list[str] | None = Field(
        default=None, description="Only include specific job types (optional)"
    )
    min_priority: int = Field(default=0, ge=0, le=100, strict=True,
                              description="Minimum priority to include")


class PollRequest(BaseModel):
    batch_id: str = Field(min_length=1, max_length=255,
                          description="Provider batch ID to poll (as flush returned it)")
