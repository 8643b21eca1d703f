"""``/api/v1/batch/…``: the AI batch job queue over the engine and the providers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from batchd.api import ingress, jsonbody
from batchd.api.aibatch import views
from batchd.api.aibatch.auth import Caller, Supervisor
from batchd.api.aibatch.schemas import EnqueueRequest, FlushRequest, PollRequest
from batchd.core.jobqueue import JobQueue
from batchd.core.jobs import JobPick, JobStatus

router = APIRouter(route_class=jsonbody.PolicyRoute)


async def job_queue(request: Request) -> JobQueue:
    return request.app.state.job_queue  # type: ignore[no-any-return]


Queue = Annotated[JobQueue, Depends(job_queue)]


@router.post("/enqueue")
@ingress.accepts(ingress.BodyKind.JSON)
async def enqueue(body: EnqueueRequest, caller: Caller, queue: Queue) -> dict[str, Any]:
    """Queue a job for the next flush; an ``idempotency_key`` seen before returns that job."""
    job, created = await queue.enqueue(
        caller, job_type=body.job_type, payload=body.payload, priority=body.priority,
        run_after=body.run_after_ts(), idempotency_key=body.idempotency_key,
    )
    provider = queue.providers(None).name
    return {
        "success": True,
        "job": views.job_json(job),
        "message": "Job queued for batch processing" if created
        else "A job with this idempotency_key already exists; returning it",
        "estimated_completion": views.COMPLETION.get(provider, "after the next flush"),
    }


@router.get("/jobs")
async def list_jobs(
    caller: Caller, queue: Queue, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    """The newest jobs, with the counts of all of them."""
    jobs, counts = await queue.list(caller, limit=limit)
    return {
        "jobs": [views.job_json(j) for j in jobs],
        "total_count": sum(counts.values()),
        "pending_count": counts.get(JobStatus.PENDING, 0),
        "processing_count": counts.get(JobStatus.PROCESSING, 0),
    }


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, caller: Caller, queue: Queue) -> dict[str, Any]:
    return views.job_json(await queue.get(caller, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, caller: Caller, queue: Queue) -> dict[str, bool]:
    """Cancel a pending job, or a flushed one (its result is then dropped)."""
    await queue.cancel(caller, job_id)
    return {"success": True, "cancelled": True}


@router.get("/stats")
async def stats(caller: Caller, queue: Queue) -> dict[str, Any]:
    return views.stats_json(await queue.totals(caller))


@router.get("/jobs/{job_id}/result", response_model=dict[str, Any])
async def job_result(job_id: str, caller: Caller, queue: Queue) -> Response:
    """A completed job's result (409 while it has none)."""
    # Sent as stored: it is JSON already, no parse and encode on the way out.
    return Response(await queue.result(caller, job_id), media_type="application/json")


@router.post("/internal/flush")
async def flush(
    caller: Supervisor, queue: Queue, body: Annotated[FlushRequest | None, Body()] = None
) -> dict[str, Any]:
    """Send the ready pending jobs, highest priority first, to one provider batch."""
    body = body or FlushRequest()
    if body.job_types is not None:
        for i, name in enumerate(body.job_types):
            queue.check_job_type(name, ["body", "job_types", i])
    pick = JobPick(
        max_jobs=body.max_jobs, min_priority=body.min_priority,
        job_types=tuple(body.job_types) if body.job_types is not None else None,
    )
    done = await queue.flush(caller.tenant_id, pick)
    if done is None:
        return {"success": True, "batch_id": None, "jobs_count": 0, "estimated_tokens": 0,
                "message": "No pending jobs are ready to flush"}
    return {
        "success": True,
        "batch_id": done.batch_id,
        "jobs_count": done.jobs_count,
        "estimated_tokens": done.estimated_tokens,
        "message": f"Flushed {done.jobs_count} jobs to {done.provider} batch {done.batch_id}",
    }


@router.post("/internal/poll")
async def poll(body: PollRequest, caller: Supervisor, queue: Queue) -> dict[str, Any]:
    """Record the results a provider batch has; ``status`` is ``in_progress``,
    ``canceling`` or ``ended``."""
    polled = await queue.poll(caller.tenant_id, body.batch_id)
    results = [views.result_json(o, w) for o, w in polled.results]
    return {
        "success": True,
        "batch_id": polled.batch_id,
        "status": polled.progress,
        "results": results,
        "jobs_processed": len(results),
        "jobs_remaining": polled.remaining,
        "message": f"{len(results)} results recorded; {polled.remaining} jobs still processing",
    }
