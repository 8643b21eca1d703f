"""The example simulation templates: seeded, deterministic, priced, scaled by the run's size."""

from __future__ import annotations

from typing import Any

import pytest

from batchd.tasks.context import TaskContext
from batchd.tasks.examples import board_meeting, crisis_response

TEMPLATES = [board_meeting.board_meeting, crisis_response.crisis_response]
ESTIMATES = [board_meeting.estimate_usd, crisis_response.estimate_usd]


def run(template: Any, **params: Any) -> tuple[dict[str, Any], TaskContext]:
    ctx = TaskContext(item_id="itm_1", batch_id="bat_1", attempt=1)
    return template(params, ctx), ctx


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_is_deterministic_per_seed(template: Any) -> None:
    first, a = run(template, entity_count=6, timepoint_count=12, seed=3)
    again, b = run(template, entity_count=6, timepoint_count=12, seed=3)
    other, c = run(template, entity_count=6, timepoint_count=12, seed=4)
    assert first == again and a.usage == b.usage
    assert (first, a.usage.cost_usd) != (other, c.usage.cost_usd)
    assert a.usage.reported and a.usage.cost_usd > 0 and first["tokens"] > 0


@pytest.mark.parametrize(("template", "estimate"), list(zip(TEMPLATES, ESTIMATES, strict=True)))
def test_template_work_and_estimate_grow_with_entities_times_timepoints(
    template: Any, estimate: Any
) -> None:
    _, small = run(template, entity_count=2, timepoint_count=2, severity=0.2)
    _, large = run(template, entity_count=4, timepoint_count=8, severity=0.2)
    assert large.usage.tokens_out > 4 * small.usage.tokens_out
    params = {"entity_count": 4, "timepoint_count": 8}
    assert estimate(params) == pytest.approx(8 * estimate({"entity_count": 2,
                                                            "timepoint_count": 2}))


def test_board_meeting_votes_every_motion_and_costs_about_its_estimate() -> None:
    out, ctx = run(board_meeting.board_meeting, entity_count=5, timepoint_count=10,
                   agenda=["a", "b"])
    assert [m["motion"] for m in out["motions"]] == ["a", "b"]
    assert all(m["votes_for"] + m["votes_against"] == 5 for m in out["motions"])
    assert out["utterances"] == 50
    est = board_meeting.estimate_usd({"entity_count": 5, "timepoint_count": 10})
    assert ctx.usage.cost_usd == pytest.approx(est, rel=0.1)


def test_crisis_costs_more_when_it_escalates() -> None:
    mild, cheap = run(crisis_response.crisis_response, entity_count=10, timepoint_count=50,
                      severity=0.1)
    severe, dear = run(crisis_response.crisis_response, entity_count=10, timepoint_count=50,
                       severity=0.9)
    assert mild["contained"] and severe["escalated_hours"] > 0
    assert dear.usage.cost_usd > crisis_response.estimate_usd(
        {"entity_count": 10, "timepoint_count": 50}) > cheap.usage.cost_usd
