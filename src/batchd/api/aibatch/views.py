"""Jobs, poll results and stats as the AI queue document shows them."""

from __future__ import annotations

from typing import Any

import orjson

from batchd.core.jobs import Job, JobOutcome, JobStatus, JobTotals, WaitingJob
from batchd.domain.models import iso

# What a flush's jobs can expect, by provider (the document's field is free text).
COMPLETION = {
    "local": "minutes after the next flush",
    "anthropic": "within 24 hours of the next flush",
    "openai": "within 24 hours of the next flush",
}


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "job_type": job.job_type,
        "status": job.status,
        "priority": job.priority,
        "custom_id": job.custom_id,
        "batch_id": job.batch_id,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "run_after": iso(job.run_after),
        "completed_at": iso(job.completed_at),
        "tokens_used": job.tokens_used,
        "cost_usd": job.cost_usd,  # not in the document: an added field
        "error_message": job.error_message,
    }


def result_json(outcome: JobOutcome, job: WaitingJob) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "status": outcome.kind.value,
        "result": orjson.loads(outcome.result) if outcome.result is not None else None,
        "error": outcome.error,
        "tokens_used": outcome.tokens_in + outcome.tokens_out,
        "cost_usd": outcome.cost_usd,  # not in the document: an added field
        "processing_time_ms": outcome.processing_ms,
    }


def stats_json(t: JobTotals) -> dict[str, Any]:
    return {
        "total_jobs_queued": t.total,
        "pending_jobs": t.count(JobStatus.PENDING),
        "processing_jobs": t.count(JobStatus.PROCESSING),
        "completed_jobs": t.count(JobStatus.COMPLETED),
        "failed_jobs": t.count(JobStatus.FAILED),
        "total_tokens_used": t.tokens,
        "total_cost_usd": t.cost_usd,
        "total_savings_usd": t.savings_usd,
        "avg_processing_time_hours": t.avg_processing_hours,
    }
