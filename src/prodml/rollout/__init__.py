"""Layer 6, rollout: experiment analysis over the prediction and label logs, and the
controller that moves a challenger through canary steps to promotion — or rolls it
back — on valid statistics.

It reads records (deployments, plans, logs) and writes deployment changes through the
registry's :class:`~prodml.registry.DeploymentStore`; it never imports ``serving``:
servers follow the deployment revisions it writes. The controller and the analysis
(DuckDB, SciPy) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prodml.core import lazy_attributes
from prodml.rollout._metrics import (
    GUARDRAIL_METRICS,
    METRICS,
    PRIMARY_METRICS,
    Guardrail,
    MetricInfo,
    metric_info,
)
from prodml.rollout._plan import DEFAULT_GUARDRAILS, DEFAULT_STEPS, RolloutPlan, Step
from prodml.rollout._state import ACTIVE_STATUSES, STATUSES, RolloutState

if TYPE_CHECKING:
    from prodml.rollout._analysis import ArmSummary, ExperimentAnalysis, analyze_experiment
    from prodml.rollout._analysis_compare import Comparison, GuardrailCheck
    from prodml.rollout._controller import CONTROLLER, Rollouts
    from prodml.rollout._decide import Verdict, decide
    from prodml.rollout._decisions import ROLLED_BACK_RULE, Decision
    from prodml.rollout._report import (
        render_rollout_analysis,
        render_rollout_report,
        rollout_report,
    )
    from prodml.rollout._store import PlanRecord, RolloutStore
else:
    __getattr__ = lazy_attributes(
        __name__,
        {
            "prodml.rollout._analysis": ["ArmSummary", "ExperimentAnalysis", "analyze_experiment"],
            "prodml.rollout._analysis_compare": ["Comparison", "GuardrailCheck"],
            "prodml.rollout._controller": ["CONTROLLER", "Rollouts"],
            "prodml.rollout._decisions": ["ROLLED_BACK_RULE", "Decision"],
            "prodml.rollout._decide": ["Verdict", "decide"],
            "prodml.rollout._report": [
                "render_rollout_analysis",
                "render_rollout_report",
                "rollout_report",
            ],
            "prodml.rollout._store": ["PlanRecord", "RolloutStore"],
        },
    )

__all__ = [
    "ACTIVE_STATUSES",
    "CONTROLLER",
    "DEFAULT_GUARDRAILS",
    "DEFAULT_STEPS",
    "GUARDRAIL_METRICS",
    "METRICS",
    "PRIMARY_METRICS",
    "ROLLED_BACK_RULE",
    "STATUSES",
    "ArmSummary",
    "Comparison",
    "Decision",
    "ExperimentAnalysis",
    "Guardrail",
    "GuardrailCheck",
    "MetricInfo",
    "PlanRecord",
    "RolloutPlan",
    "RolloutState",
    "RolloutStore",
    "Rollouts",
    "Step",
    "Verdict",
    "analyze_experiment",
    "decide",
    "metric_info",
    "render_rollout_analysis",
    "render_rollout_report",
    "rollout_report",
]
