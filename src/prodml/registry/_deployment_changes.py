"""How each change of a deployment transforms its spec, and what it records besides.

Pure functions over :class:`DeploymentSpec` (no database): the
:class:`~prodml.registry.DeploymentStore` runs them under the endpoint's lock. A
:class:`Change` carries the action, actor, reason, the evidence (checked to be JSON
data up front, so a bad value is refused before anything is written) and the
``within`` hook that writes in the change's own transaction.

>>> canary = DeploymentSpec.canary("m:1", "m:2", weight=0.0)
>>> without_arm("ep", "challenger")(canary) == DeploymentSpec.single("m:1")
True
>>> standby = with_standby(DeploymentSpec.single("m:2"), "m:1")
>>> standby.policy, standby.shadow_fraction, [(a.name, a.role) for a in standby.arms]
('shadow', 0.0, [('champion', 'champion'), ('previous', 'shadow')])
>>> check_evidence("ep", {"p": float("nan")})
Traceback (most recent call last):
...
prodml.core.errors.DefinitionError: deployment 'ep': evidence must be JSON data (finite numbers, strings, lists, string-keyed mappings): Out of range float values are not JSON compliant
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from prodml.core import StateError, json_mapping
from prodml.registry._deployment_spec import Arm, Deployment, DeploymentSpec

__all__ = [
    "STANDBY_ARM",
    "WEIGHT_ACTIONS",
    "Change",
    "Within",
    "check_evidence",
    "paused",
    "single_of",
    "with_standby",
    "with_weights",
    "without_arm",
]

WEIGHT_ACTIONS = ("set_weights", "guardrail", "advance")
"""The actions :meth:`DeploymentStore.set_weights` may record."""
STANDBY_ARM = "previous"
"""The arm a ``promote(..., keep_previous=True)`` keeps the old champion in."""

Within = Callable[[Session, Deployment], None]
"""A hook a change calls inside its transaction once the deployment is written and the
aliases moved: what it writes in ``session`` commits or rolls back with the change."""


@dataclass(frozen=True)
class Change:
    """What one change records besides the spec: action, who, why, the evidence, and the
    hook to run inside its transaction."""

    action: str
    actor: str
    reason: str | None
    evidence: dict[str, Any] | None = None
    within: Within | None = None

    @classmethod
    def of(
        cls,
        endpoint: str,
        action: str,
        actor: str,
        reason: str | None,
        evidence: Mapping[str, Any] | None,
        within: Within | None,
    ) -> Change:
        return cls(action, actor, reason, check_evidence(endpoint, evidence), within)


def check_evidence(endpoint: str, evidence: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``evidence`` as a dict of JSON data (checked now, not when the database refuses)."""
    if evidence is None:
        return None
    return json_mapping(evidence, owner=f"deployment {endpoint!r}", field="evidence")


def single_of(spec: DeploymentSpec, model: str) -> DeploymentSpec:
    return DeploymentSpec(
        "single",
        (Arm("champion", model, "champion"),),
        unit=spec.unit,
        stratify_by=spec.stratify_by,
        salt=spec.salt,
        guardrails=spec.guardrails,
        default_response=spec.default_response,
        timeout_ms=spec.timeout_ms,
    )


def with_standby(spec: DeploymentSpec, model: str) -> DeploymentSpec:
    """``spec`` plus ``model`` as a shadow arm sent no requests (``shadow_fraction`` 0):
    servers keep it loaded, so restoring it is fast."""
    standby = Arm(STANDBY_ARM, model, "shadow", 0.0)
    return replace(spec, policy="shadow", arms=(*spec.arms, standby), shadow_fraction=0.0)


def without_arm(endpoint: str, name: str) -> Callable[[DeploymentSpec], DeploymentSpec]:
    def change(spec: DeploymentSpec) -> DeploymentSpec:
        arm = spec.arm(name)
        if arm.role == "champion":
            raise StateError(
                f"deployment {endpoint!r}: arm {name!r} is the champion; expected a "
                "non-champion arm (promote another arm first)"
            )
        if arm.role != "shadow" and (spec.policy == "bandit" or arm.weight > 0):
            takes = "a bandit share" if spec.policy == "bandit" else f"weight {arm.weight}"
            raise StateError(
                f"deployment {endpoint!r}: arm {name!r} takes live traffic ({takes}); "
                "expected a shadow arm or weight 0 (set its weight to 0 first)"
            )
        rest = tuple(a for a in spec.arms if a.name != name)
        if [a.role for a in rest if a.role != "shadow"] != ["champion"]:
            return replace(spec, arms=rest)  # still an experiment (checked as ever)
        # Only the champion serves now: it takes all live traffic.
        arms = tuple(replace(a, weight=1.0) if a.role == "champion" else a for a in rest)
        if len(arms) > 1:
            return replace(spec, policy="shadow", arms=arms, bandit=None)
        return replace(spec, policy="single", arms=arms, shadow_fraction=1.0, bandit=None)

    return change


def paused(endpoint: str, flag: bool) -> Callable[[DeploymentSpec], DeploymentSpec]:
    def change(spec: DeploymentSpec) -> DeploymentSpec:
        if spec.paused == flag:
            state = "paused" if flag else "not paused"
            raise StateError(
                f"deployment {endpoint!r} is already {state}; expected it "
                f"{'not paused' if flag else 'paused'}"
            )
        return replace(spec, paused=flag)

    return change


def with_weights(weights: Mapping[str, float]) -> Callable[[DeploymentSpec], DeploymentSpec]:
    return lambda spec: spec.with_weights(weights)
