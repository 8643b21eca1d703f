"""Tiers, limits, quota checks and billing periods (core/quotas.py, core/usage.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchd.core import quotas, usage
from batchd.core.quotas import Limits, Metering, Quota


def test_tiers_default_to_the_documented_batch_sizes() -> None:
    table = quotas.tier_table()
    assert {t: table[t].max_batch_size for t in table} == {
        "free": 5, "basic": 20, "pro": 50, "enterprise": 100,
    }
    assert table["enterprise"].api_calls == table["enterprise"].items == -1


def test_tier_table_merges_overrides_and_refuses_unknown_names() -> None:
    table = quotas.tier_table({"free": {"api_calls": 10, "cost_usd": 0.5}})
    assert table["free"] == Limits(max_batch_size=5, api_calls=10, items=100, cost_usd=0.5)
    assert table["pro"] == quotas.DEFAULT_TIERS["pro"]
    with pytest.raises(ValueError, match="gold"):
        quotas.tier_table({"gold": {"api_calls": 1}})
    with pytest.raises(ValueError, match="calls"):
        quotas.tier_table({"free": {"calls": 1}})
    with pytest.raises(ValueError, match="-1"):
        quotas.tier_table({"free": {"items": -5}})


def test_key_overrides_win_over_the_tier_and_unknown_tiers_are_free() -> None:
    tiers = quotas.tier_table()
    assert quotas.limits_for("pro", {"items": -1}, tiers=tiers).items == -1
    assert quotas.limits_for("pro", None, tiers=tiers) == tiers["pro"]
    assert quotas.limits_for("platinum", None, tiers=tiers) == tiers["free"]


def test_metering_names_the_first_quota_passed() -> None:
    m = Metering(tenant_id="t", add={"api_calls": 1}, quotas=(
        Quota("api_calls", "api_calls", 10),
        Quota("cost_usd", "cost_usd", 1.0, pending=0.4),
        Quota("items", "items_submitted", -1),
    ))
    assert m.metrics == ["api_calls", "cost_usd", "items_submitted"]
    assert m.exceeded({"api_calls": 10, "cost_usd": 0.6, "items_submitted": 10**9}) is None
    over = m.exceeded({"api_calls": 11})
    assert over is not None and over.quota == "api_calls"
    assert over.details == {"quota": "api_calls", "limit": 10, "value": 11.0}
    cost = m.exceeded({"api_calls": 1, "cost_usd": 0.61})
    assert cost is not None and cost.quota == "cost_usd"


def test_call_metering_checks_what_the_request_needs() -> None:
    limits = quotas.DEFAULT_TIERS["free"]
    read = usage.call_metering("t", limits)
    assert (dict(read.add), [q.name for q in read.quotas]) == ({"api_calls": 1}, ["api_calls"])
    assert usage.call_metering("t", limits, enforce=False).quotas == ()
    create = usage.call_metering("t", limits, items=True, est_usd=0.3)
    assert [(q.name, q.pending) for q in create.quotas] == [
        ("api_calls", 0.0), ("items", 0.0), ("cost_usd", 0.3),
    ]


def test_quota_status_remaining_and_exhausted() -> None:
    limits = Limits(max_batch_size=5, api_calls=10, items=-1, cost_usd=2.0)
    calls, items, cost = usage.quota_statuses(
        {"api_calls": 10, "items_submitted": 7, "cost_usd": 2.5}, limits
    )
    assert (calls.remaining, calls.exhausted) == (0, True)
    assert (items.remaining, items.exhausted) == (-1, False)
    assert (cost.remaining, cost.exhausted) == (0, True)


def test_billing_periods() -> None:
    march_6 = datetime(2026, 3, 6, 12, tzinfo=UTC).timestamp()
    assert usage.period_of(march_6) == "2026-03"
    assert usage.days_remaining(march_6) == 25
    assert usage.days_remaining(datetime(2024, 2, 29, tzinfo=UTC).timestamp()) == 0
    assert usage.previous_periods("2026-02", 3) == ["2026-01", "2025-12", "2025-11"]
