"""The task of bench/export_csv.py (BATCHD_TASKS=bench.export_tasks): a company profile
with a nested output, computed inline."""

from __future__ import annotations

from typing import Any

from batchd.tasks.registry import Runner, task


@task("bench_profile", mode="inline", runners=[Runner("neon")])
def bench_profile(arguments: dict[str, Any]) -> dict[str, Any]:
    n = int(arguments["n"])
    return {
        "name": f"{arguments['company']} Inc",
        "score": n / 7,
        "founded": 1990 + n % 30,
        "public": n % 2 == 0,
        "hq": {"city": "Paris", "country": "FR"},
    }
