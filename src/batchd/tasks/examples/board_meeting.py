"""Simulation template: a board debating motions until it votes.

Each board member (an entity) holds a stance on every motion. At each timepoint
every member speaks for one motion, and a few colleagues move towards the speaker
as far as the speaker's influence and their own openness carry them. At the end
every motion is put to a vote. The run is seeded: the same input gives the same
minutes, tokens and cost. Work grows with entity_count × timepoint_count.
"""

from __future__ import annotations

import random
from typing import Any

from batchd.domain.cost import CostModel
from batchd.tasks.context import TaskContext
from batchd.tasks.registry import task

USD_PER_1K_TOKENS = 0.004
# Tokens of one utterance: the speaker reads the room (fixed) and speaks (80-220).
CONTEXT_TOKENS = 100
SPEECH_TOKENS = (80, 220)
EXPECTED_TOKENS = CONTEXT_TOKENS + sum(SPEECH_TOKENS) / 2  # per member and timepoint
LISTENERS = 6
DEFAULT_AGENDA = ["approve budget", "hire CFO", "open new market"]

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "entity_count": {"type": "integer", "minimum": 1, "maximum": 100},
        "timepoint_count": {"type": "integer", "minimum": 1, "maximum": 1000},
        "seed": {"type": "integer"},
        "agenda": {
            "type": "array", "minItems": 1, "maxItems": 10,
            "items": {"type": "string", "minLength": 1, "maxLength": 200},
        },
    },
    "required": ["entity_count", "timepoint_count"],
}
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "motions": {"type": "array"},
        "consensus": {"type": "number"},
        "utterances": {"type": "integer"},
        "tokens": {"type": "integer"},
    },
}


def estimate_usd(params: Any) -> float:
    steps = int(params.get("entity_count", 1)) * int(params.get("timepoint_count", 1))
    return round(steps * EXPECTED_TOKENS * USD_PER_1K_TOKENS / 1000, 8)


@task(
    "board_meeting", version="1.0.0", input_schema=INPUT_SCHEMA, output_schema=OUTPUT_SCHEMA,
    cost=CostModel(per_record=estimate_usd), mode="thread",
)
def board_meeting(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A seeded board meeting of entity_count members over timepoint_count rounds."""
    n, rounds = int(params["entity_count"]), int(params["timepoint_count"])
    agenda = list(params.get("agenda") or DEFAULT_AGENDA)
    rng = random.Random(f"board_meeting:{params.get('seed', 0)}")
    stance = [[rng.uniform(-1, 1) for _ in agenda] for _ in range(n)]
    influence = [rng.uniform(0.2, 1.0) for _ in range(n)]
    openness = [rng.uniform(0.05, 0.5) for _ in range(n)]
    tokens_in = tokens_out = utterances = 0
    for _ in range(rounds):
        if ctx.cancelled:
            raise RuntimeError("cancelled")
        for speaker in range(n):
            motion = rng.randrange(len(agenda))
            said = stance[speaker][motion]
            for listener in rng.sample(range(n), min(LISTENERS, n)):
                if listener != speaker:
                    pull = influence[speaker] * openness[listener]
                    own = stance[listener][motion]
                    stance[listener][motion] = own + pull * (said - own)
            utterances += 1
            tokens_in += CONTEXT_TOKENS
            tokens_out += rng.randint(*SPEECH_TOKENS)
    motions = []
    for m, title in enumerate(agenda):
        votes_for = sum(1 for member in stance if member[m] > 0)
        motions.append({
            "motion": title, "votes_for": votes_for, "votes_against": n - votes_for,
            "passed": votes_for * 2 > n,
        })
    spread = sum(
        max(member[m] for member in stance) - min(member[m] for member in stance)
        for m in range(len(agenda))
    ) / len(agenda)
    tokens = tokens_in + tokens_out
    ctx.report_usage(
        tokens_in=tokens_in, tokens_out=tokens_out,
        cost_usd=round(tokens * USD_PER_1K_TOKENS / 1000, 8),
    )
    return {
        "motions": motions, "consensus": round(1 - spread / 2, 4), "utterances": utterances,
        "tokens": tokens,
    }
