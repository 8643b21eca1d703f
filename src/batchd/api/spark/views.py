"""Engine batches in Spark's words: ``batch_status``, ``pipeline_status`` and the bodies."""

from __future__ import annotations

import math
from typing import Any

from batchd import __version__
from batchd.api.spark import services, wire
from batchd.domain.models import Batch
from batchd.domain.states import StopReason

# Spark statuses after which nothing more happens (the pipeline is "closed").
FINISHED = frozenset({"completed", "completed_by_timeout", "failed", "cancelled"})


def spark_meta(b: Batch) -> dict[str, Any]:
    return b.metadata.get("spark") or {}


def is_spark(b: Batch) -> bool:
    return "spark" in b.metadata


def batch_status(b: Batch) -> str:
    """``created`` → ``in_progress`` → ``closed`` → ``completed`` (or ``…_by_timeout``).

    A finished batch whose results still wait in the output buffer stays ``closed``:
    ``completed`` means everything was processed and handed out.
    """
    by_timeout = b.close_reason == "timeout"
    if b.status == "cancelled" or b.stop_reason == StopReason.CANCELLED:
        return "cancelled"
    if b.status == "open":
        return "in_progress" if b.n_total else "created"
    if b.status == "closed" or b.n_undelivered:
        return "closed_by_timeout" if by_timeout else "closed"
    if b.status in ("completed", "partial"):
        return "completed_by_timeout" if by_timeout else "completed"
    return "failed"  # failed (error rate above acceptable_error_percentage), expired


def pipeline_status(b: Batch, status: str | None = None) -> str:
    if (status or batch_status(b)) in FINISHED:
        return "closed"
    if b.n_queued and b.max_output_bytes is not None and b.out_buffer_bytes >= b.max_output_bytes:
        return "paused"  # the output buffer is full: dispatch waits for chunkresults
    if b.n_queued or b.n_running:
        return "processing"
    return "idle"


def status_json(b: Batch, *, request_ts: float, now: float) -> dict[str, Any]:
    """The pipeline status object (``GET …/status``, and the answer to most calls)."""
    status = batch_status(b)
    in_limit = b.max_input_bytes or 0
    out_limit = b.max_output_bytes or 0
    return {
        "response_timestamp": wire.timestamp(now),
        "request_timestamp": wire.timestamp(request_ts),
        "batch_status": status,
        "pipeline_status": pipeline_status(b, status),
        "chunks_available": b.n_undelivered,
        "chunks_submitted": b.n_total,
        "record_submitted": b.r_total,
        "chunks_completed": b.n_succeeded + b.n_failed,
        "records_completed": b.r_succeeded + b.r_failed,
        "compute_time_ms": math.ceil(b.compute_ms),
        "input_buffer_used_bytes": b.in_buffer_bytes,
        "input_buffer_remaining_bytes": max(0, in_limit - b.in_buffer_bytes),
        "output_buffer_used_bytes": b.out_buffer_bytes,
        "output_buffer_remaining_bytes": max(0, out_limit - b.out_buffer_bytes),
        "workers_in_use": b.n_running,
        "records_available": b.r_undelivered,
    }


def batch_json(b: Batch, *, now: float, detailed: bool = False) -> dict[str, Any]:
    """The batch object (create, PATCH, and with ``detailed`` the batch information)."""
    m = spark_meta(b)
    data: dict[str, Any] = {
        "service_id": services.service_id(b.task),
        "version_id": services.version_id(b.task, b.version),
        "compiler_version": f"batchd_v{__version__}",
        "correlation_id": m.get("correlation_id"),
        "source_system": m.get("source_system"),
        "unique_record_key": m.get("unique_record_key"),
    }
    if detailed:
        data["summary"] = _summary(b, now, detailed=True)
        data["configuration"] = {
            "initial_workers": m.get("initial_workers") or m.get("max_workers", b.parallelism),
            "chunks_per_request": m.get("chunks_per_thread", 1),
            "runner_thread_count": m.get("runner_thread_count", 1),
            "acceptable_error_percentage": m.get("acceptable_error_percentage", 0),
            "input_buffer_allocated_bytes": b.max_input_bytes or 0,
            "output_buffer_allocated_bytes": b.max_output_bytes or 0,
            "max_workers": m.get("max_workers", b.parallelism),
        }
    data.update(_tail(b, now))
    return {"object": "batch", "id": b.id, "data": data}


def tenant_entry(b: Batch, *, now: float) -> dict[str, Any]:
    """One batch of ``GET /batch/status``."""
    data: dict[str, Any] = {
        "pipeline_status": pipeline_status(b),
        "summary": _summary(b, now, detailed=False),
    }
    data.update(_tail(b, now))
    return {"object": "batch", "id": b.id, "data": data}


def _tail(b: Batch, now: float) -> dict[str, Any]:
    return {
        "response_timestamp": wire.timestamp(now),
        "batch_status": batch_status(b),
        "created_by": b.owner,
        "created_timestamp": wire.timestamp(b.created_at),
        "updated_timestamp": wire.timestamp(_updated_at(b)),
        "service_uri": services.Service(name=b.task, version=b.version).uri,
    }


def _summary(b: Batch, now: float, *, detailed: bool) -> dict[str, Any]:
    records_done = b.r_succeeded + b.r_failed
    end = b.finished_at if b.finished_at is not None else now
    tail = {
        "records_submitted": b.r_total,
        "records_failed": b.r_failed,
        "records_completed": records_done,
        "compute_time_ms": math.ceil(b.compute_ms),
        "batch_time_ms": round(max(0.0, end - b.created_at) * 1000, 3),
    }
    if not detailed:
        return tail
    return {
        "chunks_submitted": b.n_total,
        # batchd does not count retries per batch; a retried chunk shows once it settles
        "chunks_retried": 0,
        "chunks_completed": b.n_succeeded + b.n_failed,
        "chunks_failed": b.n_failed,
        "records_retried": 0,
        "input_size_bytes": b.in_bytes,
        "output_size_bytes": b.out_bytes,
        "avg_compute_time_ms": round(b.compute_ms / records_done, 3) if records_done else 0,
        **tail,
    }


def _updated_at(b: Batch) -> float:
    times = (b.created_at, b.started_at, b.closed_at, b.finished_at, b.last_activity_at)
    return max(t for t in times if t is not None)
