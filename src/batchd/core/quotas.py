"""Limits: what may enter a batch's input buffer; tiers, monthly quotas and metering."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batchd.domain import errors


class InputBufferFull(errors.Busy):
    """The upload does not fit the input buffer; nothing of it was stored. Retry later."""

    code = "input_buffer_full"


class OutputBufferFull(errors.Busy):
    """The tenant's output buffers are full: new items wait until results are taken."""

    code = "output_buffer_full"


def output_buffer_full(*, tenant_used: int, tenant_limit: int | None) -> OutputBufferFull | None:
    """Backpressure: the error for an upload while the tenant's undelivered results
    fill its output buffers (``tenant_limit`` None or 0: no limit), else None."""
    if not tenant_limit or tenant_used < tenant_limit:
        return None
    return OutputBufferFull(
        f"tenant output buffer full: {tenant_used} of {tenant_limit} bytes hold results not "
        "yet taken; take results, then retry"
    )


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


# Tiers and their limits are vocabulary (settings check them too): batchd.domain.limits.
from batchd.domain.limits import (  # noqa: E402
    DEFAULT_TIERS,
    LIMIT_NAMES,
    UNLIMITED,
    Limits,
    check_overrides,
    is_limited,
    limits_for,
    tier_table,
)

__all__ = [
    "DEFAULT_TIERS", "LIMIT_NAMES", "UNLIMITED", "Limits", "check_overrides", "is_limited",
    "limits_for", "tier_table",
]


def batch_too_large(size: int, limits: Limits, *, tier: str) -> errors.BatchTooLarge | None:
    """The error for a batch that would hold ``size`` items, past its key's batch size."""
    most = limits.max_batch_size
    if not is_limited(most) or size <= most:
        return None
    return errors.BatchTooLarge(
        f"a batch holds at most {most} items for this key ({tier} tier); this one would "
        f"hold {size}",
        limit=most, size=size, tier=tier,
    )


def over_budget(est_usd: float, budget_usd: float | None) -> errors.OverBudget | None:
    """The error for a batch whose estimated cost is above its own budget cap: the one
    budget admission rule of every dialect (:mod:`batchd.core.submit` applies it)."""
    if budget_usd is None or est_usd <= budget_usd + 1e-9:
        return None
    return errors.OverBudget(
        f"the estimated cost of the batch, ${est_usd:.6g}, is above its budget cap "
        f"of ${budget_usd:.6g}; raise the cap or send fewer records",
        est_usd=est_usd, budget_usd=budget_usd,
    )


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
                    quota=q.name, limit=q.limit, value=value,
                )
        return None


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value != int(value) else str(int(value))
