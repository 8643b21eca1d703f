"""Simulation template: agencies containing a spreading crisis, hour by hour.

The crisis grows with its severity; at each timepoint every agency (an entity)
contains, coordinates or briefs the public, and each action is a message with its
tokens. While the crisis is above the escalation level every agency also sends an
escalation briefing, so a crisis that gets out of hand costs more than the
estimate; one contained early costs less (monitoring is cheap). Seeded and
deterministic; work grows with entity_count × timepoint_count.
"""

from __future__ import annotations

import random
from typing import Any

from batchd.domain.cost import CostModel
from batchd.tasks.context import TaskContext
from batchd.tasks.registry import task

USD_PER_1K_TOKENS = 0.004
ACTION_TOKENS = (200, 400)  # one action's message
EXPECTED_TOKENS = sum(ACTION_TOKENS) / 2  # the estimate: one action per agency and hour
BRIEFING_TOKENS = 250  # extra, per agency and escalated hour
MONITOR_TOKENS = 60  # per agency and hour once contained
ESCALATION_LEVEL = 15.0
CONTAINED_LEVEL = 0.5
MAX_LEVEL = 100.0

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "entity_count": {"type": "integer", "minimum": 1, "maximum": 100},
        "timepoint_count": {"type": "integer", "minimum": 1, "maximum": 1000},
        "severity": {"type": "number", "minimum": 0, "maximum": 1},
        "seed": {"type": "integer"},
    },
    "required": ["entity_count", "timepoint_count"],
}


def estimate_usd(params: Any) -> float:
    steps = int(params.get("entity_count", 1)) * int(params.get("timepoint_count", 1))
    return round(steps * EXPECTED_TOKENS * USD_PER_1K_TOKENS / 1000, 8)


@task(
    "crisis_response", version="1.0.0", input_schema=INPUT_SCHEMA,
    cost=CostModel(per_record=estimate_usd), mode="thread",
)
def crisis_response(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A seeded crisis met by entity_count agencies over timepoint_count hours."""
    n, hours = int(params["entity_count"]), int(params["timepoint_count"])
    severity = float(params.get("severity", 0.5))
    rng = random.Random(f"crisis_response:{params.get('seed', 0)}")
    capacity = [rng.uniform(0.3, 1.2) for _ in range(n)]
    intensity = peak = 4.0 + 8.0 * severity
    actions = {"contain": 0, "coordinate": 0, "brief": 0}
    tokens = escalated_hours = 0
    contained_at: int | None = None
    for hour in range(hours):
        if ctx.cancelled:
            raise RuntimeError("cancelled")
        if contained_at is not None:
            tokens += MONITOR_TOKENS * n
            for _ in range(n):
                rng.random()  # monitoring: still one look per agency and hour
            continue
        intensity = min(MAX_LEVEL, intensity * (1.0 + 0.25 * severity * rng.uniform(0.5, 1.5)))
        if intensity > ESCALATION_LEVEL:
            escalated_hours += 1
            tokens += BRIEFING_TOKENS * n
        for agency in range(n):
            roll = rng.random()
            if roll < 0.6:
                actions["contain"] += 1
                intensity = max(0.0, intensity - capacity[agency] * rng.uniform(0.2, 0.8))
            elif roll < 0.85:
                actions["coordinate"] += 1
                helped = rng.randrange(n)
                capacity[helped] = min(2.0, capacity[helped] * 1.05)
            else:
                actions["brief"] += 1
            tokens += rng.randint(*ACTION_TOKENS)
        peak = max(peak, intensity)
        if intensity < CONTAINED_LEVEL:
            contained_at = hour + 1
    cost = round(tokens * USD_PER_1K_TOKENS / 1000, 8)
    ctx.report_usage(tokens_out=tokens, cost_usd=cost)
    return {
        "contained": contained_at is not None, "contained_at_hour": contained_at,
        "final_intensity": round(intensity, 4), "peak_intensity": round(peak, 4),
        "escalated_hours": escalated_hours, "actions": actions, "tokens": tokens,
    }
