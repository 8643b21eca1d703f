"""Tiers: how many items a batch may hold and what a key may use per month.

``-1`` means unlimited. The settings check a configured tier table with these
functions, so they sit in the vocabulary below every layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


MAX_LIMIT = 1e15  # any count or sum of dollars a month; exact as a float and an int64


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
        if not value <= MAX_LIMIT:  # also NaN; larger numbers are "unlimited", say so
            raise ValueError(f"limit {name!r} must be at most {MAX_LIMIT:.0e}, "
                             "or -1 for unlimited")
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


