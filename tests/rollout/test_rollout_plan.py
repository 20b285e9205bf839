"""Rollout plans: defaults, round trips, and bad plans refused with the field named."""

from __future__ import annotations

import pytest

from prodml.core import DefinitionError
from prodml.rollout import Guardrail, RolloutPlan, Step


def test_plan_reads_weights_durations_and_defaults() -> None:
    plan = RolloutPlan.from_dict(
        {
            "challenger": "m:2",
            "steps": [0.01, {"weight": 0.2, "bake": "30m", "min_samples": 50}],
            "bake": "2h",
            "min_samples": 10,
            "guardrails": [{"metric": "error_rate", "margin": 0.02}],
            "decommission_delay": "1d",
        }
    )
    assert plan.steps == (Step(0.01, 7200.0, 10), Step(0.2, 1800.0, 50))
    assert plan.guardrails == (Guardrail("error_rate", 0.02),)
    assert plan.decommission_delay_s == 86400.0
    assert RolloutPlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "ab", "weights": {"a": 0.7, "b": 0.7}}, "weights must sum to 1"),
        ({"challenger": "m:2", "metric": "auc"}, "metric 'auc' is unknown"),
        ({"challenger": "m:2", "steps": [0.5, 0.1]}, "must increase strictly"),
        ({"challenger": "m:2", "steps": [1.0]}, "promotion is the step to 100%"),
        ({"challenger": "m:2", "steps": []}, "at least one step"),
        ({"steps": [0.1]}, "needs challenger"),
        ({"challenger": "m:2", "bake": "1 hour"}, "invalid duration"),
        ({"challenger": "m:2", "guardrails": [{"metric": "error_rate", "margin": -1}]}, "margin"),
        ({"challenger": "m:2", "guardrails": [{"metric": "latency", "margin": 1}]}, "unknown"),
        ({"challenger": "m:2", "guardrails": [{"metric": "error_rate"}]}, "missing.*margin"),
        ({"challenger": "m:2", "alpha": 0.9}, "alpha"),
        ({"challenger": "m:2", "colour": "red"}, "malformed"),
        ({"kind": "blue"}, "kind must be"),
    ],
)
def test_bad_plans_are_refused_naming_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        RolloutPlan.from_dict(data)
