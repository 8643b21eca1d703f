"""Billing periods (calendar months, UTC) and what a tenant used of its quotas."""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from batchd.core import quotas
from batchd.core.quotas import Limits, Metering, Quota

# Usage metrics (the ``usage`` table), metered in the transactions that change them.
API_CALLS = "api_calls"
ITEMS_SUBMITTED = "items_submitted"
ITEMS_SUCCEEDED = "items_succeeded"
ITEMS_FAILED = "items_failed"
COST_USD = "cost_usd"
TOKENS = "tokens"


def period_of(ts: float) -> str:
    """``YYYY-MM`` of a timestamp, in UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def days_remaining(ts: float) -> int:
    """Whole days left in the month of ``ts`` after its day (31 March → 0)."""
    day = datetime.fromtimestamp(ts, UTC)
    return calendar.monthrange(day.year, day.month)[1] - day.day


def previous_periods(period: str, n: int) -> list[str]:
    """The ``n`` periods before ``period``, newest first."""
    year, month = (int(p) for p in period.split("-"))
    out = []
    for _ in range(n):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        out.append(f"{year:04d}-{month:02d}")
    return out


def call_metering(
    tenant_id: str, limits: Limits, *, enforce: bool = True, items: bool = False,
    est_usd: float | None = None,
) -> Metering:
    """One API call, checked against the call quota (unless ``enforce`` is off).

    ``items`` also checks the item quota (for a transaction that submits items, which
    meters them itself); ``est_usd`` checks the cost quota with that estimate on top.
    """
    checks = []
    if enforce:
        checks.append(Quota("api_calls", API_CALLS, limits.api_calls))
    if items:
        checks.append(Quota("items", ITEMS_SUBMITTED, limits.items))
    if est_usd is not None:
        checks.append(Quota("cost_usd", COST_USD, limits.cost_usd, pending=est_usd))
    return Metering(tenant_id=tenant_id, add={API_CALLS: 1}, quotas=tuple(checks))


def submit_metering(
    tenant_id: str, limits: Limits, *, est_usd: float, call: Metering | None = None
) -> Metering | None:
    """What a transaction that submits items must stay within: the month's item quota
    (the items it submits are metered with them) and its cost quota, the month's cost
    plus ``est_usd`` on top; with ``call``, that API call's count and checks too.

    None when there is nothing to add or check (unlimited quotas, no call).
    """
    checks = list(call.quotas) if call is not None else []
    if quotas.is_limited(limits.items):
        checks.append(Quota("items", ITEMS_SUBMITTED, limits.items))
    if quotas.is_limited(limits.cost_usd):
        checks.append(Quota("cost_usd", COST_USD, limits.cost_usd, pending=est_usd))
    add = dict(call.add) if call is not None else {}
    if not checks and not add:
        return None
    return Metering(tenant_id=tenant_id, add=add, quotas=tuple(checks))


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """Used, limit and remaining of one quota this period (-1 = unlimited)."""

    name: str
    used: float
    limit: float

    @property
    def remaining(self) -> float:
        if not quotas.is_limited(self.limit):
            return quotas.UNLIMITED
        return max(0.0, self.limit - self.used)

    @property
    def exhausted(self) -> bool:
        return quotas.is_limited(self.limit) and self.used >= self.limit - 1e-9


def quota_statuses(usage: Mapping[str, float], limits: Limits) -> list[QuotaStatus]:
    return [
        QuotaStatus("api_calls", float(usage.get(API_CALLS, 0)), limits.api_calls),
        QuotaStatus("items", float(usage.get(ITEMS_SUBMITTED, 0)), limits.items),
        QuotaStatus("cost_usd", float(usage.get(COST_USD, 0.0)), limits.cost_usd),
    ]
