"""The deployment a rollout plan starts from: a canary plan replaces the endpoint's
deployment by a canary of its champion and the plan's challenger at the first step's
weight (keeping the serving options); an A/B plan keeps the A/B deployment, with the
plan's weights when it gives them."""

from __future__ import annotations

from prodml.core import DefinitionError, StateError
from prodml.registry import DeploymentSpec
from prodml.rollout._plan import RolloutPlan

__all__ = ["first_step"]


def first_step(
    plan: RolloutPlan, endpoint: str, current: DeploymentSpec
) -> tuple[DeploymentSpec, str, str]:
    """The spec to write, the deployment change that writes it (``deploy`` or
    ``set_weights``) and the name of the champion's arm in it."""
    champion = current.champion
    if champion is None:
        raise StateError(
            f"deployment {endpoint!r} has no champion arm (policy {current.policy!r}); a "
            "rollout compares a challenger against the champion"
        )
    if plan.kind == "canary":
        if plan.challenger is None:  # RolloutPlan refuses it; kept for the type checker
            raise DefinitionError(f"rollout plan of {endpoint!r}: a canary needs a challenger")
        spec = DeploymentSpec.canary(
            champion.model, plan.challenger, weight=plan.steps[0].weight, unit=current.unit,
            stratify_by=current.stratify_by, salt=current.salt, guardrails=current.guardrails,
            default_response=current.default_response, timeout_ms=current.timeout_ms,
            on_missing_entity=current.on_missing_entity,
        )  # fmt: skip
        return spec, "deploy", "champion"
    if current.policy != "ab":
        raise StateError(
            f"deployment {endpoint!r} has policy {current.policy!r}; an 'ab' plan runs on a "
            "deployment with policy 'ab' (deploy one with `prodml deploy`)"
        )
    spec = current
    if plan.weights is not None:
        live = {arm.name for arm in current.live_arms}
        if set(plan.weights) != live:
            raise DefinitionError(
                f"rollout plan of {endpoint!r}: weights name arms {sorted(plan.weights)}, "
                f"expected the deployment's serving arms {sorted(live)}"
            )
        spec = current.with_weights(plan.weights)
    return spec, "set_weights", champion.name
