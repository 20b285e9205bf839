"""The controller's rules, one at a time, on hand-made analyses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prodml.core import DefinitionError
from prodml.rollout import RolloutPlan, RolloutState, decide
from prodml.rollout._options import planned_n

T0 = datetime(2013, 6, 1, tzinfo=UTC)
PLAN = RolloutPlan.from_dict(
    {"challenger": "m:2", "steps": [0.05, 0.5], "bake": "1h", "min_samples": 100}
)


def state(step: int = 0, **changes: Any) -> RolloutState:
    return RolloutState(T0, T0, 3, "m:1", "m:2", step=step, **changes)


def guardrail(metric: str, status: str = "non_inferior") -> dict[str, Any]:
    return {"metric": metric, "status": status, "worse_by": 0.0, "lower": -1.0, "upper": 1.0,
            "allowance": 0.01}  # fmt: skip


def analysis(
    verdict: str = "inconclusive",
    *,
    practical: bool = False,
    units: int = 500,
    mismatch: bool = False,
    guardrails: tuple[str, ...] = ("non_inferior",) * 3,
    lower: float = -0.01,
    upper: float = 0.01,
) -> dict[str, Any]:
    names = ("error_rate", "p99_latency_ms", "prediction_shift")
    return {
        "comparisons": [
            {
                "arm": "challenger",
                "n_champion": units * 19,
                "n_arm": units,
                "improvement": (lower + upper) / 2,
                "verdict": verdict,
                "practical": practical,
                "sequential": {"lower": lower, "upper": upper, "pvalue": 0.5},
                "guardrails": [guardrail(m, s) for m, s in zip(names, guardrails, strict=True)],
            }
        ],
        "srm": {
            "arms": ["champion", "challenger"],
            "observed": [units * 19, units],
            "expected": [0.95, 0.05],
            "pvalue": 1e-9 if mismatch else 0.5,
            "threshold": 0.001,
            "mismatch": mismatch,
        },
    }


LATER = T0 + timedelta(hours=2)


def test_a_step_bakes_for_its_time_and_its_sample() -> None:
    assert decide(PLAN, state(), analysis(), T0 + timedelta(minutes=10)).code == "baking"
    assert decide(PLAN, state(), analysis(units=20), LATER).code == "baking"
    assert decide(PLAN, state(), analysis(), LATER).action == "advance"


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        (analysis(mismatch=True), "srm"),
        (analysis(guardrails=("breached", "non_inferior", "non_inferior")), "guardrail"),
        (analysis("worse", lower=-0.05, upper=-0.01), "worse"),
    ],
)
def test_rollback_is_immediate_even_while_baking(case: dict[str, Any], rule: str) -> None:
    verdict = decide(PLAN, state(), case, T0 + timedelta(seconds=1))
    assert (verdict.action, verdict.code) == ("rollback", rule)


def test_the_last_step_promotes_only_a_practically_better_challenger() -> None:
    better = analysis("better", practical=True, lower=0.01, upper=0.05)
    assert decide(PLAN, state(1), better, LATER).action == "promote"
    pending = analysis(
        "better", practical=True, guardrails=("non_inferior", "inconclusive", "non_inferior")
    )
    assert decide(PLAN, state(1), pending, LATER).code == "collecting"
    assert decide(PLAN, state(1), analysis(), LATER).code == "collecting"


def test_a_not_worse_plan_promotes_an_inconclusive_challenger_once_guardrails_hold() -> None:
    plan = RolloutPlan.from_dict({**PLAN.to_dict(), "promote_on": "not_worse"})
    verdict = decide(plan, state(1), analysis(), LATER)
    assert (verdict.action, verdict.code) == ("promote", "promote")
    assert "not worse" in verdict.reason
    pending = analysis(guardrails=("non_inferior", "inconclusive", "non_inferior"))
    assert decide(plan, state(1), pending, LATER).code == "collecting"
    assert decide(plan, state(0), analysis(), LATER).action == "advance"  # steps still walk
    worse = analysis("worse", lower=-0.05, upper=-0.01)
    assert decide(plan, state(1), worse, LATER).action == "rollback"
    with pytest.raises(DefinitionError, match="promote_on must be 'better' or 'not_worse'"):
        RolloutPlan.from_dict({**PLAN.to_dict(), "promote_on": "maybe"})


def test_promotion_waits_for_a_human_when_the_plan_asks() -> None:
    plan = RolloutPlan.from_dict({**PLAN.to_dict(), "require_approval": True})
    better = analysis("better", practical=True, lower=0.01, upper=0.05)
    assert decide(plan, state(1), better, LATER).code == "awaiting_approval"
    approved = state(1, approved_by="ana", approved_at=LATER)
    assert decide(plan, approved, better, LATER).action == "promote"


def test_an_effect_below_the_minimum_stops_and_time_runs_out() -> None:
    plan = RolloutPlan.from_dict({**PLAN.to_dict(), "min_effect": 0.05, "max_duration": "1d"})
    small = analysis("better", lower=0.001, upper=0.01)
    assert decide(plan, state(1), small, LATER).code == "too_small"
    assert decide(plan, state(1), analysis(), T0 + timedelta(days=2)).code == "out_of_time"


def test_ab_ships_stops_or_continues() -> None:
    plan = RolloutPlan.from_dict({"kind": "ab"})
    better = analysis("better", practical=True, lower=0.01, upper=0.05)
    verdict = decide(plan, state(), better, LATER)
    assert (verdict.action, verdict.arm) == ("ship", "challenger")
    assert decide(plan, state(), analysis(mismatch=True), LATER).action == "stop"
    assert decide(plan, state(), analysis("worse", lower=-1, upper=-0.1), LATER).action == "stop"
    assert decide(plan, state(), analysis(), LATER).action == "continue"
    assert decide(plan, state(), None, LATER).action == "continue"


def test_the_sequential_test_is_tuned_to_one_sample_for_the_whole_experiment() -> None:
    assert planned_n(PLAN) == 1000  # steps ask for 100 units: at least 1,000
    big = RolloutPlan.from_dict({**PLAN.to_dict(), "steps": [0.05, 0.5], "min_samples": 5000})
    assert planned_n(big) == 5000
    assert planned_n(RolloutPlan.from_dict({**PLAN.to_dict(), "planned_n": 300})) == 300
