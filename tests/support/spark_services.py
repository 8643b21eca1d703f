"""Spark services the Spark e2e tests load (BATCHD_TASKS=…,tests.support.spark_services)."""

from __future__ import annotations

from typing import Any

from batchd.tasks.registry import task

NVDA_VERSIONS = ["1.3.9", "1.4.0", "1.4.3", "1.10.0", "2.0.0-rc.1"]


def _register_nvda(version: str) -> None:
    @task("stocks/NVDA", version=version, mode="inline")
    def nvda(record: dict[str, Any]) -> dict[str, Any]:
        """One record at a time (not vectorised): several outputs to filter."""
        x = float(record.get("x", 0))
        return {"version": version, "value_1": x, "value_2": 2 * x,
                "valuation_by_dcf": 10 * x, "other": "o"}


for _v in NVDA_VERSIONS:
    _register_nvda(_v)


@task("tests/Boom", version="1.0.0", mode="inline", vectorised=True, max_attempts=1)
def boom(records: list[Any]) -> list[Any]:
    """Fails every chunk as a whole."""
    raise RuntimeError("boom")
