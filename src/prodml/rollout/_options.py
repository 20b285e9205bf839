"""What an experiment analysis is asked, from the rollout plan when there is one (its
metric, guardrails, the current step's split and start, α split over the compared arms,
the planned sample), else from the deployment alone (its split since its last change
and the default guardrails).

>>> from datetime import UTC, datetime
>>> from prodml.registry import DeploymentSpec
>>> plan = RolloutPlan.from_dict({"challenger": "m:2", "steps": [0.1], "min_samples": 50})
>>> t = datetime(2013, 6, 1, tzinfo=UTC)
>>> spec = DeploymentSpec.canary("m:1", "m:2", weight=0.1)
>>> options = plan_options(plan, RolloutState(t, t, 3, "m:1", "m:2"), spec)
>>> options["expected_weights"], options["planned_n"], options["alpha"]
({'champion': 0.9, 'challenger': 0.1}, 1000, 0.05)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prodml.registry import DeploymentSpec
from prodml.rollout._plan import DEFAULT_GUARDRAILS, RolloutPlan
from prodml.rollout._state import RolloutState

__all__ = ["default_options", "plan_options", "planned_n"]


def planned_n(plan: RolloutPlan) -> int:
    """The per-arm sample the mSPRT mixing variance is tuned to: the plan's, else its
    largest step minimum (at least 1,000) — fixed for the whole experiment, as the
    always-valid guarantee requires (a τ² re-tuned to each look's n would not be)."""
    if plan.planned_n is not None:
        return plan.planned_n
    return max(1000, *(step.min_samples for step in plan.steps))


def plan_options(plan: RolloutPlan, state: RolloutState, spec: DeploymentSpec) -> dict[str, Any]:
    """The analysis of a plan's experiment, deployed as ``spec``."""
    weights = spec.serving_weights()
    challengers = max(1, len(weights) - 1)
    return {
        "start": state.started_at,
        "champion": state.champion_arm,
        "metric": plan.metric,
        "guardrails": plan.guardrails,
        "expected_weights": weights if len(weights) > 1 else None,
        "srm_start": state.step_started_at,
        "alpha": plan.alpha / challengers,  # Bonferroni over the compared arms
        "min_effect": plan.min_effect,
        "planned_n": planned_n(plan),
        "segment_by": plan.segment_by,
    }


def default_options(spec: DeploymentSpec | None, changed: datetime | None) -> dict[str, Any]:
    """The analysis of an endpoint with no plan, deployed as ``spec`` (None: not
    deployed) since ``changed``: its split holds only since its last change."""
    options: dict[str, Any] = {"guardrails": DEFAULT_GUARDRAILS}
    weights = {} if spec is None else spec.serving_weights()
    if len(weights) > 1:
        options["expected_weights"] = weights
        options["srm_start"] = changed
    return options
