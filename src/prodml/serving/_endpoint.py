"""One endpoint's routing table at one deployment revision: which arm answers a request.

A table is immutable; a new deployment revision builds a new table (new models loaded
and warmed first) and swaps it in with one assignment, so a request in flight keeps the
table it started with and no request is dropped. Breakers and guardrail windows belong
to (endpoint, arm, model) and carry over between tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prodml.core import DefinitionError
from prodml.features import FeatureService
from prodml.registry import Arm, Deployment, DeploymentSpec
from prodml.serving._bandit import BanditRouter
from prodml.serving._breaker import CircuitBreaker
from prodml.serving._guardrails import ArmWindow
from prodml.serving._served import ServedModel
from prodml.serving._shadow import ShadowSink
from prodml.stats import Assigner, sample_fraction

__all__ = ["ArmState", "EndpointTable", "Route", "routed_arms"]


@dataclass(eq=False)
class ArmState:
    """An arm with its loaded model, breaker and (for guarded arms) guardrail window."""

    arm: Arm
    model: ServedModel
    breaker: CircuitBreaker
    window: ArmWindow | None = None
    tripped: bool = False
    checked_at: float = 0.0  # time.monotonic() of the last guardrail check
    shadow_sink: ShadowSink | None = None  # where a shadow arm's answers go (set on use)

    @property
    def name(self) -> str:
        return self.arm.name


@dataclass(frozen=True)
class Route:
    """Where one request goes: the arm that answers, the shadows that also see it, and
    the bandit propensity of the choice (None for hashed routing)."""

    arm: ArmState
    shadows: tuple[ArmState, ...]
    propensity: float | None = None


@dataclass(eq=False)
class EndpointTable:
    """The routing table of one endpoint at one revision."""

    deployment: Deployment
    arms: dict[str, ArmState]
    service: FeatureService | None = None
    service_error: str | None = None
    bandit: BanditRouter | None = None
    weights: dict[str, float] = field(default_factory=dict)
    #: dtypes of the native request's entity keys and request fields, as trained
    request_types: dict[str, str] = field(default_factory=dict)
    #: the primary model's task as trained ("classification", "regression"), if known
    task: str | None = None

    def __post_init__(self) -> None:
        spec = self.deployment.spec
        self.endpoint = self.deployment.endpoint
        self.revision = self.deployment.revision
        self.salt = _salt(spec, self.endpoint)
        self._shadow_salt = self.salt + _SHADOW_SALT
        champion = spec.champion
        self.champion: ArmState | None = self.arms[champion.name] if champion else None
        self.shadows = tuple(self.arms[a.name] for a in spec.shadow_arms)
        if not self.weights:
            self.weights = {n: w for n, w in spec.serving_weights().items() if w > 0}
        self._only = next(iter(self.weights)) if len(self.weights) == 1 else None
        self._assign = Assigner(self.weights) if self.weights else None

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change live weights in place (a guardrail trip, before the DB records it)."""
        live = {n: w for n, w in weights.items() if w > 0}
        self._assign = Assigner(live) if live else None
        self.weights = live
        self._only = next(iter(live)) if len(live) == 1 else None

    @property
    def primary(self) -> ServedModel:
        """The model whose signature the endpoint's requests are checked against."""
        arm = self.champion or next(iter(self.arms.values()))
        return arm.model

    def route(self, unit: str, request_id: str, now: datetime, stratum: str | None = None) -> Route:
        """The arm for a request: sticky by unit hash (per-stratum salt when stratified),
        or Thompson sampling for a bandit; shadows sampled by unit."""
        spec = self.deployment.spec
        propensity = None
        if self.bandit is not None and not spec.paused:
            decision = self.bandit.choose(request_id, now)
            name, propensity = decision.arm, decision.propensity
        elif self._only is not None:
            name = self._only
        else:
            salt = self.salt if stratum is None else f"{self.salt}\0{stratum}"
            name = self._assign(unit, salt) if self._assign is not None else self._fallback()
        shadows: tuple[ArmState, ...] = ()
        if self.shadows:
            fraction = spec.shadow_fraction
            if fraction >= 1.0 or sample_fraction(unit, self._shadow_salt, fraction):
                shadows = self.shadows
        return Route(self.arms[name], shadows, propensity)

    def _fallback(self) -> str:
        """Every live weight is 0 (all tripped): the champion, else the first arm."""
        return self.champion.name if self.champion is not None else next(iter(self.arms))

    def describe(self) -> dict[str, Any]:
        spec = self.deployment.spec
        return {
            "endpoint": self.endpoint,
            "revision": self.revision,
            "policy": spec.policy,
            "paused": spec.paused,
            "weights": dict(self.weights),
            "arms": [
                {
                    "name": state.name,
                    "role": state.arm.role,
                    "model": state.model.ref,
                    "breaker": state.breaker.state,
                    "tripped": state.tripped,
                    # where its live predictions run: "event_loop" for a light model
                    "runs_on": "event_loop" if state.model.batcher.inline_limit_s else "threads",
                }
                for state in self.arms.values()
            ],
            "feature_service": None if self.service is None else self.service.name,
        }


_SHADOW_SALT = "\0shadow"


def _salt(spec: DeploymentSpec, endpoint: str) -> str:
    return spec.salt or endpoint


def routed_arms(
    spec: DeploymentSpec, endpoint: str, units: Sequence[str]
) -> tuple[list[str], list[bool]]:
    """Per routing unit, the live arm :meth:`EndpointTable.route` sends its request to,
    and whether the shadow arms see it — the same hashes and salts, for a replay of
    traffic outside the server (a deployment without strata or a bandit).

    >>> from prodml.registry import DeploymentSpec
    >>> spec = DeploymentSpec.canary("m:1", "m:2", weight=0.5)
    >>> from collections import Counter
    >>> arms, shadowed = routed_arms(spec, "e", [f"u{i}" for i in range(1000)])
    >>> sorted(Counter(arms).items()), any(shadowed)
    ([('challenger', 512), ('champion', 488)], False)
    >>> routed_arms(DeploymentSpec.shadow("m:1", "m:2"), "e", ["u1", "u2"])
    (['champion', 'champion'], [True, True])
    """
    if spec.policy == "bandit":
        raise DefinitionError(
            f"endpoint {endpoint!r}: a bandit deployment routes by its posteriors, not by "
            "unit hash; routed_arms replays hash routing only"
        )
    weights = {n: w for n, w in spec.serving_weights().items() if w > 0}
    salt = _salt(spec, endpoint)
    if len(weights) == 1:
        arms = [next(iter(weights))] * len(units)
    elif weights:
        assign = Assigner(weights)
        arms = [assign(unit, salt) for unit in units]
    else:
        fallback = spec.champion.name if spec.champion is not None else spec.arms[0].name
        arms = [fallback] * len(units)
    if not spec.shadow_arms:
        return arms, [False] * len(units)
    fraction = spec.shadow_fraction
    shadow_salt = salt + _SHADOW_SALT
    shadowed = [fraction >= 1.0 or sample_fraction(u, shadow_salt, fraction) for u in units]
    return arms, shadowed


def stratum_of(row: Mapping[str, Any], field_name: str | None) -> str | None:
    if field_name is None:
        return None
    value = row.get(field_name)
    return None if value is None else str(value)
