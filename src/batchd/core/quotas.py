"""Limits: what may enter a batch's input buffer; tiers, monthly quotas and metering."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchd.domain import errors


class InputBufferFull(errors.Busy):
    """The upload does not fit the input buffer; nothing of it was stored. Retry later."""

    code = "input_buffer_full"


def input_buffer_full(
    size: int, *, batch_used: int, batch_limit: int | None, tenant_used: int,
    tenant_limit: int | None,
) -> InputBufferFull | None:
    """The error for an upload of ``size`` bytes that does not fit, else None."""
    if batch_limit is not None and batch_used + size > batch_limit:
        return InputBufferFull(
            f"input buffer full: the upload is {size} bytes and the batch's buffer has "
            f"{max(0, batch_limit - batch_used)} of {batch_limit} bytes free; "
            "retry when processing has drained it"
        )
    if tenant_limit and tenant_used + size > tenant_limit:
        return InputBufferFull(
            f"tenant input buffer full: the upload is {size} bytes and the tenant's buffers "
            f"have {max(0, tenant_limit - tenant_used)} of {tenant_limit} bytes free; "
            "retry when processing has drained them"
        )
    return None


# Tiers: batch size and monthly limits. -1 means unlimited.

UNLIMITED = -1
LIMIT_NAMES = ("max_batch_size", "api_calls", "items", "cost_usd")


@dataclass(frozen=True, slots=True)
class Limits:
    """What a key may do: items per batch, and API calls, items and cost per month."""

    max_batch_size: int
    api_calls: int
    items: int
    cost_usd: float

    def with_overrides(self, overrides: Mapping[str, float] | None) -> Limits:
        if not overrides:
            return self
        values = {name: getattr(self, name) for name in LIMIT_NAMES}
        for name, value in overrides.items():
            values[name] = float(value) if name == "cost_usd" else int(value)
        return Limits(**values)


DEFAULT_TIERS: dict[str, Limits] = {
    "free": Limits(max_batch_size=5, api_calls=1_000, items=100, cost_usd=5.0),
    "basic": Limits(max_batch_size=20, api_calls=10_000, items=500, cost_usd=25.0),
    "pro": Limits(max_batch_size=50, api_calls=100_000, items=1_000, cost_usd=100.0),
    "enterprise": Limits(
        max_batch_size=100, api_calls=UNLIMITED, items=UNLIMITED, cost_usd=UNLIMITED
    ),
}


def check_overrides(overrides: Mapping[str, Any]) -> dict[str, float]:
    """Limit overrides checked by name and value (``-1`` = unlimited); raises ValueError."""
    out: dict[str, float] = {}
    for name, value in overrides.items():
        if name not in LIMIT_NAMES:
            raise ValueError(f"unknown limit {name!r}; known: {', '.join(LIMIT_NAMES)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"limit {name!r} must be a number")
        if value < 0 and value != UNLIMITED:
            raise ValueError(f"limit {name!r} must be >= 0, or -1 for unlimited")
        out[name] = value
    return out


def tier_table(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Limits]:
    """The default tiers with ``{tier: {limit: value}}`` applied; raises ValueError."""
    table = dict(DEFAULT_TIERS)
    for tier, values in (overrides or {}).items():
        if tier not in table:
            raise ValueError(f"unknown tier {tier!r}; known: {', '.join(table)}")
        table[tier] = table[tier].with_overrides(check_overrides(values))
    return table


def limits_for(
    tier: str, key_overrides: Mapping[str, float] | None, *, tiers: Mapping[str, Limits]
) -> Limits:
    """A key's limits: its tier's (free when unknown), then the key's own overrides."""
    return tiers.get(tier, tiers["free"]).with_overrides(key_overrides)


def is_limited(limit: float) -> bool:
    return limit != UNLIMITED


# Metering: usage added in the transaction of the effect it counts, with the quotas
# that transaction must stay within.

@dataclass(frozen=True, slots=True)
class Quota:
    """``metric`` may reach at most ``limit`` this period, counting ``pending`` on top."""

    name: str  # as errors name it: api_calls, items, cost_usd
    metric: str  # the usage metric it bounds
    limit: float
    pending: float = 0.0


@dataclass(frozen=True, slots=True)
class Metering:
    """Usage a request adds, and the quotas checked once it is added."""

    tenant_id: str
    add: Mapping[str, float] = field(default_factory=dict)
    quotas: tuple[Quota, ...] = ()

    @property
    def metrics(self) -> list[str]:
        return sorted({q.metric for q in self.quotas})

    def exceeded(self, usage: Mapping[str, float]) -> errors.QuotaExceeded | None:
        """The first quota ``usage`` (read after the adds) passes, else None."""
        for q in self.quotas:
            if not is_limited(q.limit):
                continue
            value = float(usage.get(q.metric, 0.0)) + q.pending
            if value > q.limit + 1e-9:
                return errors.QuotaExceeded(
                    f"monthly {q.name} quota exceeded: this request would bring it to "
                    f"{_fmt(value)} of {_fmt(q.limit)}",
                    quota=q.name,
                )
        return None


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value != int(value) else str(int(value))
