"""Wire schemas of the native API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from batchd.api.openapi import TIME_OR_EPOCH
from batchd.domain import states
from batchd.domain.limits import LIMIT_NAMES, MAX_LIMIT, UNLIMITED
from batchd.domain.models import Batch, BatchSpec, Item, iso

MAX_METADATA_BYTES = 16 * 1024
BATCH_FINISHED = "batch.finished"  # the event a batch's webhook_url is sent


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it here, with the field's name.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class BatchSettings(BaseModel):
    """Settings of a new batch (JSON body fields, or query parameters for NDJSON/CSV)."""

    model_config = ConfigDict(extra="forbid")

    task: Text = Field(min_length=1, max_length=200)
    version: Text | None = Field(default=None, max_length=50)
    runner: Text | None = Field(default=None, max_length=100)
    records_per_item: int | None = Field(
        default=None, ge=1, le=100_000,
        description="Records per item; when left out the engine chooses (one for a "
        "per-record task, many for a vectorised one).",
    )
    priority: int = Field(default=50, ge=0, le=100)
    parallelism: int | None = Field(default=None, ge=1, le=100_000)
    fail_fast: bool = False
    max_error_pct: float = Field(default=100.0, ge=0, le=100)
    budget_usd: float | None = Field(default=None, ge=0, le=1e12)
    run_after: datetime | None = Field(default=None, json_schema_extra=TIME_OR_EPOCH)
    item_timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    retry_backoff_s: float | None = Field(default=None, ge=0, le=86400)
    expires_after_s: float | None = Field(default=None, gt=0, le=365 * 86400)
    metadata: dict[str, Any] = Field(default_factory=dict)
    close: bool = True
    webhook_url: Text | None = Field(
        default=None, max_length=4096,
        description="Sent a signed batch.finished event once the batch has ended.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes as JSON; at most {MAX_METADATA_BYTES} allowed")
        return value

    @field_validator("run_after")
    @classmethod
    def _naive_is_utc(cls, value: datetime | None) -> datetime | None:
        # The API speaks UTC: a time without an offset must not take the server's zone.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def to_spec(self, *, now: float, default_parallelism: int | None, default_attempts: int,
                default_backoff_s: float, task_attempts: int | None) -> BatchSpec:
        return BatchSpec(
            task=self.task, version=self.version or "", runner=self.runner,
            records_per_item=self.records_per_item or 1, priority=self.priority,
            parallelism=self.parallelism or default_parallelism, fail_fast=self.fail_fast,
            max_error_pct=self.max_error_pct, budget_usd=self.budget_usd,
            run_after=self.run_after.timestamp() if self.run_after else 0.0,
            item_timeout_s=self.item_timeout_s,
            max_attempts=self.max_attempts or task_attempts or default_attempts,
            retry_backoff_s=(
                default_backoff_s if self.retry_backoff_s is None else self.retry_backoff_s
            ),
            expires_at=now + self.expires_after_s if self.expires_after_s else None,
            metadata=self.metadata, close=self.close, webhook_url=self.webhook_url,
            webhook_event=BATCH_FINISHED if self.webhook_url else None,
        )


class BatchCreate(BatchSettings):
    items: list[Any] | None = Field(default=None, description="One input per record.")


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text | None = Field(default=None, max_length=1000)


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    tier: Literal["free", "basic", "pro", "enterprise"] = "free"


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    role: Literal["user", "supervisor", "admin", "operator"] = Field(
        default="user",
        description="An admin key may give at most its own role, for its own tenant; only an "
        "operator key may give `operator` or name another tenant.",
    )
    tier: Literal["free", "basic", "pro", "enterprise"] | None = None
    owner: Text | None = Field(default=None, min_length=1, max_length=200)
    # Any values: check_overrides refuses a non-number (pydantic would make false 0.0).
    limits: dict[str, Any] | None = Field(
        default=None,
        description="Overrides of the tier's limits for this key: max_batch_size, "
        "api_calls, items, cost_usd (per month; -1 = unlimited).",
        json_schema_extra={
            "propertyNames": {"enum": list(LIMIT_NAMES)},
            "additionalProperties": {"anyOf": [
                {"const": UNLIMITED}, {"type": "number", "minimum": 0, "maximum": MAX_LIMIT}]},
        },
    )

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, value: dict[str, Any] | None) -> dict[str, float] | None:
        from batchd.core import quotas

        return None if value is None else quotas.check_overrides(value)


def batch_json(
    b: Batch, *, now: float, warnings: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The Batch. ``status`` is its lifecycle state (``open``: takes input, ``closed``, or
    how it ended); ``display_status`` what it is doing at ``now`` (``running``, …);
    ``warnings`` what its reader should know (``task_not_served``: no running worker
    claims its task)."""
    return {
        "id": b.id,
        "task": b.task,
        "version": b.version,
        "runner": b.runner,
        "status": b.status,
        # Why it stopped early (fail_fast, budget_exceeded, cancelled, expired), or None.
        "cancel_reason": b.stop_reason,
        "display_status": states.display_state(b, now=now).value,
        "owner": b.owner,
        "dialect": b.dialect,  # the API it was made through
        "priority": b.priority,
        "parallelism": b.parallelism,
        "records_per_item": b.records_per_item,
        "fail_fast": b.fail_fast,
        "max_error_pct": b.max_error_pct,
        "budget_usd": b.budget_usd,
        "max_attempts": b.max_attempts,
        "item_timeout_s": b.item_timeout_s,
        "run_after": iso(b.run_after) if b.run_after else None,
        "expires_at": iso(b.expires_at),
        "counts": {
            "total": b.n_total,
            "queued": b.n_queued,
            "running": b.n_running,
            "succeeded": b.n_succeeded,
            "failed": b.n_failed,
            "cancelled": b.n_cancelled,
        },
        "records": {"total": b.r_total, "succeeded": b.r_succeeded, "failed": b.r_failed,
                    "cancelled": states.records_cancelled(b)},
        "cost": {
            "estimated_usd": round(b.est_usd, 10),
            "reserved_usd": round(max(b.reserved_usd, 0.0), 10),
            "actual_usd": round(b.actual_usd, 10),
            "tokens_in": b.tokens_in,
            "tokens_out": b.tokens_out,
        },
        "created_at": iso(b.created_at),
        "started_at": iso(b.started_at),
        "closed_at": iso(b.closed_at),
        "finished_at": iso(b.finished_at),
        "metadata": b.metadata,
        "error": b.error,
        "warnings": warnings or [],
        "webhook_url": b.webhook_url,
    }


def item_json(i: Item) -> dict[str, Any]:
    import orjson

    return {
        "id": i.id,
        "seq": i.seq,
        "status": i.status,
        "attempts": i.attempts,
        "records": i.n_records,
        "input": orjson.loads(i.input),
        "output": orjson.loads(i.output) if i.output is not None else None,
        "error": i.error,
        "usage": i.usage,
        "started_at": iso(i.started_at),
        "finished_at": iso(i.finished_at),
    }
