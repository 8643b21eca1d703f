"""Processors of Parallel's Task API (``BATCHD_PARALLEL_PROCESSORS``): the model upstream
model each runs on and its price per run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Processor(BaseModel):
    """One processor; ``model`` None: the first model of the first upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str | None = Field(default=None, min_length=1)
    usd_per_run: float = Field(default=0.0, ge=0)


def parse(raw: dict[str, Any]) -> dict[str, Processor]:
    """Checked processors; raises ValueError (pydantic's) naming the problem."""
    return {name: Processor.model_validate(p) for name, p in raw.items()}
