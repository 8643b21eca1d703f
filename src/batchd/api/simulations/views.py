"""Response bodies of the Simulations dialect, with exactly the documented fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchd.api.simulations import states
from batchd.core import quotas, usage
from batchd.core.quotas import Limits
from batchd.domain.models import Batch, Item, Principal, iso
from batchd.domain.records import BatchTotals
from batchd.domain.states import TERMINAL_ITEM


def _usd(value: float) -> float:
    return round(value, 6)


def batch_json(b: Batch, items: list[Item]) -> dict[str, Any]:
    done = b.n_succeeded + b.n_failed + b.n_cancelled
    cap = b.budget_usd
    return {
        "batch_id": b.id,
        "status": states.batch_status(b.status, started=b.started_at is not None),
        "created_at": iso(b.created_at),
        "started_at": iso(b.started_at),
        "completed_at": iso(b.finished_at),
        "priority": b.priority,
        "fail_fast": b.fail_fast,
        "parallel_jobs": b.parallelism,
        "progress": {
            "total_jobs": b.n_total,
            "pending_jobs": b.n_queued,
            "running_jobs": b.n_running,
            "completed_jobs": b.n_succeeded,
            "failed_jobs": b.n_failed,
            "cancelled_jobs": b.n_cancelled,
            "progress_percent": 100 * done // b.n_total if b.n_total else 0,
        },
        "cost": {
            "estimated_cost_usd": _usd(b.est_usd),
            "actual_cost_usd": _usd(b.actual_usd),
            "budget_cap_usd": cap,
            "budget_remaining_usd": None if cap is None else _usd(max(0.0, cap - b.actual_usd)),
            "tokens_used": b.tokens_in + b.tokens_out,
        },
        "job_ids": [i.id for i in items],
        "error_message": (b.error or {}).get("message"),
        "owner_id": b.owner,
        "metadata": b.metadata or None,
    }


def job_json(i: Item, batch: Batch) -> dict[str, Any]:
    record = orjson.loads(i.input)
    finished = i.status in TERMINAL_ITEM
    return {
        "job_id": i.id,
        "status": states.job_status(i.status),
        "template_id": record.get("template_id") if isinstance(record, dict) else None,
        "cost_usd": _usd(float((i.usage or {}).get("cost_usd", 0.0))),
        "progress_percent": 100 if finished else 0,
        "created_at": iso(batch.created_at),
        "started_at": iso(i.started_at),
        "completed_at": iso(i.finished_at) if finished else None,
        "error_message": (i.error or {}).get("message") if i.status != "succeeded" else None,
    }


STATS_BUCKET = {
    "PENDING": "pending", "RUNNING": "running", "COMPLETED": "completed",
    "PARTIAL": "completed",  # finished, with results: the document has no partial count
    "FAILED": "failed", "CANCELLED": "cancelled",
}


def stats_json(totals: list[BatchTotals]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "total_batches": 0, "pending": 0, "running": 0, "completed": 0, "failed": 0,
        "cancelled": 0, "total_jobs": 0, "total_cost_usd": 0.0, "total_tokens": 0,
    }
    for t in totals:
        out[STATS_BUCKET[states.batch_status(t.status, started=t.started)]] += t.batches
        out["total_batches"] += t.batches
        out["total_jobs"] += t.items
        out["total_cost_usd"] += t.cost_usd
        out["total_tokens"] += t.tokens
    out["total_cost_usd"] = _usd(out["total_cost_usd"])
    return out


QUOTA_WORDS = {"api_calls": "API call", "items": "simulation", "cost_usd": "cost"}


def _count(limit: float) -> int:
    # A limit stored before limits were bounded may be beyond any integer JSON holds.
    if not quotas.is_limited(limit) or not limit < 2**63:
        return quotas.UNLIMITED
    return int(limit)


def usage_json(
    principal: Principal, limits: Limits, used: Mapping[str, float], *, now: float
) -> dict[str, Any]:
    status = {q.name: q for q in usage.quota_statuses(used, limits)}
    calls, sims, cost = status["api_calls"], status["items"], status["cost_usd"]
    exhausted = [q for q in status.values() if q.exhausted]
    reason = "; ".join(
        f"monthly {QUOTA_WORDS[q.name]} quota reached "
        + (f"(${q.used:.2f} of ${q.limit:.2f})" if q.name == "cost_usd"
           else f"({int(q.used)} of {int(q.limit)})")
        for q in exhausted
    )
    return {
        "user_id": principal.owner,
        "tier": principal.tier,
        "period": usage.period_of(now),
        "days_remaining": usage.days_remaining(now),
        "api_calls_used": int(calls.used),
        "simulations_used": int(sims.used),
        "cost_used_usd": _usd(cost.used),
        "tokens_used": int(used.get(usage.TOKENS, 0)),
        "api_calls_limit": _count(calls.limit),
        "simulations_limit": _count(sims.limit),
        "cost_limit_usd": float(cost.limit),
        "max_batch_size": _count(limits.max_batch_size),
        "api_calls_remaining": _count(calls.remaining),
        "simulations_remaining": _count(sims.remaining),
        "cost_remaining_usd": _usd(cost.remaining),
        "is_quota_exceeded": bool(exhausted),
        "quota_exceeded_reason": reason or None,
    }


def period_json(period: str, used: Mapping[str, float]) -> dict[str, Any]:
    return {
        "period": period,
        "api_calls": int(used.get(usage.API_CALLS, 0)),
        "simulations_run": int(used.get(usage.ITEMS_SUBMITTED, 0)),
        "simulations_completed": int(used.get(usage.ITEMS_SUCCEEDED, 0)),
        "simulations_failed": int(used.get(usage.ITEMS_FAILED, 0)),
        "cost_usd": _usd(float(used.get(usage.COST_USD, 0.0))),
        "tokens_used": int(used.get(usage.TOKENS, 0)),
    }
