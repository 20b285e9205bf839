"""What a deployment says: which model versions serve an endpoint, in which roles, with
which weights, and the guardrails the server enforces on its own.

A spec is plain data (JSON round trip with :meth:`DeploymentSpec.to_dict` /
:meth:`DeploymentSpec.from_dict`), validated on construction so that a server never
reads a deployment it cannot apply. Roles:

* ``champion`` — the production arm; answers when another arm fails (fallback);
* ``challenger`` — takes its weight of live traffic (canary, A/B, bandit);
* ``shadow`` — never answers: a ``shadow_fraction`` sample of requests also goes to it,
  off the response path, and its output is logged;
* ``arm`` — an A/B or bandit arm with no special role.

>>> spec = DeploymentSpec.canary("flight_delay:1", "flight_delay:2", weight=0.1)
>>> spec.policy, [(a.name, a.role, a.weight) for a in spec.arms]
('canary', [('champion', 'champion', 0.9), ('challenger', 'challenger', 0.1)])
>>> spec.serving_weights()
{'champion': 0.9, 'challenger': 0.1}
>>> DeploymentSpec.from_dict(spec.to_dict()) == spec
True
>>> DeploymentSpec("single", (Arm("a", "m:1", "arm"),))
Traceback (most recent call last):
...
prodml.core.errors.DefinitionError: deployment policy 'single': expected exactly one arm with role 'champion', got roles ['arm']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, get_args

from prodml.core import DefinitionError, check_name

__all__ = [
    "POLICIES",
    "ROLES",
    "Arm",
    "BanditSpec",
    "Deployment",
    "DeploymentSpec",
    "Guardrails",
    "Policy",
    "Role",
]

Policy = Literal["single", "shadow", "canary", "ab", "bandit"]
Role = Literal["champion", "challenger", "shadow", "arm"]
POLICIES: tuple[str, ...] = get_args(Policy)
ROLES: tuple[str, ...] = get_args(Role)


def _number(owner: str, name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DefinitionError(f"{owner}: {name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise DefinitionError(f"{owner}: {name} must be in [{low}, {high}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Arm:
    """One model version serving an endpoint: ``model`` is ``name:version`` (an alias
    ``name@alias`` is resolved to its version by the deployment store when deployed)."""

    name: str
    model: str
    role: Role = "arm"
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_name(self.name, kind="deployment arm")
        if not isinstance(self.model, str) or not (":" in self.model or "@" in self.model):
            raise DefinitionError(
                f"deployment arm {self.name!r}: model must be a version reference "
                f"'name:version' (or an alias 'name@alias', resolved when deployed), got "
                f"{self.model!r}"
            )
        if self.role not in ROLES:
            raise DefinitionError(
                f"deployment arm {self.name!r}: role must be one of {list(ROLES)}, got {self.role!r}"
            )
        object.__setattr__(
            self, "weight", _number(f"deployment arm {self.name!r}", "weight", self.weight, 0.0)
        )


@dataclass(frozen=True)
class Guardrails:
    """Hard limits the server enforces on non-champion arms by itself: over ``window_s``
    seconds, once an arm has ``min_requests`` requests, an error rate above
    ``max_error_rate`` or a p99 latency above ``max_p99_ms`` sets its weight to 0."""

    window_s: float = 60.0
    min_requests: int = 20
    max_error_rate: float | None = 0.05
    max_p99_ms: float | None = None

    def __post_init__(self) -> None:
        owner = "deployment guardrails"
        _number(owner, "window_s", self.window_s, 1e-3)
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int):
            raise DefinitionError(f"{owner}: min_requests must be an integer >= 1")
        _number(owner, "min_requests", self.min_requests, 1)
        if self.max_error_rate is not None:
            _number(owner, "max_error_rate", self.max_error_rate, 0.0, 1.0)
        if self.max_p99_ms is not None:
            _number(owner, "max_p99_ms", self.max_p99_ms, 1e-3)


@dataclass(frozen=True)
class BanditSpec:
    """Thompson sampling: ``reward`` is ``bernoulli`` (0/1) or ``gaussian``; every arm is
    played round-robin until it has ``burn_in`` rewards; each arm keeps at least
    ``floor`` of the traffic."""

    reward: Literal["bernoulli", "gaussian"] = "bernoulli"
    burn_in: int = 20
    floor: float = 0.05

    def __post_init__(self) -> None:
        if self.reward not in ("bernoulli", "gaussian"):
            raise DefinitionError(
                f"bandit reward must be 'bernoulli' or 'gaussian', got {self.reward!r}"
            )
        if isinstance(self.burn_in, bool) or not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise DefinitionError(f"bandit burn_in must be an integer >= 0, got {self.burn_in!r}")
        _number("bandit", "floor", self.floor, 0.0, 1.0)


@dataclass(frozen=True)
class DeploymentSpec:
    """Policy, arms and serving options of one endpoint.

    ``unit`` names the request field whose value is the routing unit (sticky
    assignment); without it, or when a request lacks it, the request id is the unit.
    ``salt`` defaults to the endpoint name. ``default_response`` is what a request gets,
    marked ``degraded``, when the champion fails too (None: an error is returned).
    ``on_missing_entity`` (``serve``, ``warn``, ``refuse``; None: the server's
    ``[serving] on_missing_entity``) governs native requests whose entity has no row in
    a feature view's online store.
    """

    policy: Policy
    arms: tuple[Arm, ...]
    shadow_fraction: float = 1.0
    unit: str | None = None
    stratify_by: str | None = None
    salt: str | None = None
    bandit: BanditSpec | None = None
    guardrails: Guardrails = field(default_factory=Guardrails)
    default_response: Any = None
    timeout_ms: float = 1000.0
    paused: bool = False
    on_missing_entity: Literal["serve", "warn", "refuse"] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        owner = f"deployment policy {self.policy!r}"
        if self.policy not in POLICIES:
            raise DefinitionError(
                f"deployment policy must be one of {list(POLICIES)}, got {self.policy!r}"
            )
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise DefinitionError(f"{owner}: arm names must be unique, got {names}")
        _number(owner, "shadow_fraction", self.shadow_fraction, 0.0, 1.0)
        _number(owner, "timeout_ms", self.timeout_ms, 1e-3)
        live = self.live_arms
        roles = sorted(arm.role for arm in live)
        champions = [arm for arm in self.arms if arm.role == "champion"]
        if len(champions) > 1:
            raise DefinitionError(f"{owner}: at most one arm may have role 'champion'")
        if self.policy == "single" and roles != ["champion"]:
            raise DefinitionError(
                f"{owner}: expected exactly one arm with role 'champion', got roles {roles}"
            )
        if self.policy == "shadow" and (
            roles != ["champion"] or not any(a.role == "shadow" for a in self.arms)
        ):
            raise DefinitionError(
                f"{owner}: expected one 'champion' arm and at least one 'shadow' arm, "
                f"got roles {sorted(a.role for a in self.arms)}"
            )
        if self.policy == "canary" and roles != ["challenger", "champion"]:
            raise DefinitionError(
                f"{owner}: expected one 'champion' and one 'challenger' arm, got roles {roles}"
            )
        if self.policy in ("ab", "bandit") and len(live) < 2:
            raise DefinitionError(f"{owner}: expected at least two serving arms, got {len(live)}")
        if self.policy == "canary":
            challenger = next(a for a in live if a.role == "challenger")
            _number(owner, "challenger weight", challenger.weight, 0.0, 1.0)
        if self.policy != "bandit" and sum(a.weight for a in live) <= 0:
            raise DefinitionError(f"{owner}: serving arms' weights must have a positive sum")
        if self.policy == "bandit" and self.bandit is None:
            object.__setattr__(self, "bandit", BanditSpec())
        if (
            self.policy == "bandit"
            and self.bandit is not None
            and self.bandit.floor * len(live) > 1
        ):
            raise DefinitionError(
                f"{owner}: bandit floor {self.bandit.floor} times {len(live)} arms exceeds 1"
            )
        if not isinstance(self.paused, bool):
            raise DefinitionError(f"{owner}: paused must be true or false, got {self.paused!r}")
        if self.on_missing_entity not in (None, "serve", "warn", "refuse"):
            raise DefinitionError(
                f"{owner}: on_missing_entity must be 'serve', 'warn', 'refuse' or null, got "
                f"{self.on_missing_entity!r}"
            )
        if self.default_response is not None and not isinstance(
            self.default_response, int | float | str | bool | list | dict
        ):
            raise DefinitionError(
                f"{owner}: default_response must be JSON data, got {type(self.default_response).__name__}"
            )

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def single(cls, model: str, **options: Any) -> DeploymentSpec:
        return cls("single", (Arm("champion", model, "champion"),), **options)

    @classmethod
    def shadow(
        cls, champion: str, shadow: str, *, fraction: float = 1.0, **options: Any
    ) -> DeploymentSpec:
        arms = (Arm("champion", champion, "champion"), Arm("shadow", shadow, "shadow", 0.0))
        return cls("shadow", arms, shadow_fraction=fraction, **options)

    @classmethod
    def canary(
        cls, champion: str, challenger: str, *, weight: float, **options: Any
    ) -> DeploymentSpec:
        weight = _number("canary", "weight", weight, 0.0, 1.0)
        arms = (
            Arm("champion", champion, "champion", 1.0 - weight),
            Arm("challenger", challenger, "challenger", weight),
        )
        return cls("canary", arms, **options)

    # -- views --------------------------------------------------------------------------
    @property
    def live_arms(self) -> tuple[Arm, ...]:
        """Arms that answer requests (every role but ``shadow``)."""
        return tuple(arm for arm in self.arms if arm.role != "shadow")

    @property
    def shadow_arms(self) -> tuple[Arm, ...]:
        return tuple(arm for arm in self.arms if arm.role == "shadow")

    @property
    def champion(self) -> Arm | None:
        return next((arm for arm in self.arms if arm.role == "champion"), None)

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise DefinitionError(
            f"deployment has no arm {name!r}: expected one of {[a.name for a in self.arms]}"
        )

    def serving_weights(self) -> dict[str, float]:
        """The weights live traffic is split by (paused: everything to the champion)."""
        champion = self.champion
        if self.paused and champion is not None:
            return {champion.name: 1.0}
        return {arm.name: arm.weight for arm in self.live_arms}

    def with_weights(self, weights: Mapping[str, float]) -> DeploymentSpec:
        """A copy with some arms' weights changed (a canary's champion takes 1 − w)."""
        checked = {
            name: _number(f"deployment arm {self.arm(name).name!r}", "weight", weight, 0.0)
            for name, weight in weights.items()
        }
        if self.policy == "canary":
            for arm in self.arms:
                if arm.role == "challenger" and arm.name in checked:
                    _number(f"deployment arm {arm.name!r}", "weight", checked[arm.name], 0.0, 1.0)
        arms = tuple(
            replace(arm, weight=checked[arm.name]) if arm.name in checked else arm
            for arm in self.arms
        )
        if self.policy == "canary" and not any(
            arm.role == "champion" and arm.name in weights for arm in self.arms
        ):
            challenger = next(a for a in arms if a.role == "challenger")
            arms = tuple(
                replace(a, weight=1.0 - challenger.weight) if a.role == "champion" else a
                for a in arms
            )
        return replace(self, arms=arms)

    def models(self) -> list[str]:
        """Every model version the deployment needs loaded, in arm order, unique."""
        return list(dict.fromkeys(arm.model for arm in self.arms))

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["arms"] = [asdict(arm) for arm in self.arms]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentSpec:
        """Read :meth:`to_dict` output (or hand-written JSON); raise
        :class:`DefinitionError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise DefinitionError(
                f"deployment spec is malformed: expected a mapping with 'policy' and 'arms', "
                f"got {type(data).__name__}"
            )
        try:
            values = dict(data)
            arms: Any = values.pop("arms")
            bandit = values.pop("bandit", None)
            guardrails = values.pop("guardrails", None) or {}
            if isinstance(arms, str | bytes) or not all(isinstance(a, Mapping) for a in arms):
                raise DefinitionError(
                    "deployment spec is malformed: arms must be a list of mappings "
                    f"({{'name', 'model', 'role', 'weight'}}), got {arms!r}"
                )
            return cls(
                arms=tuple(Arm(**dict(arm)) for arm in arms),
                bandit=BanditSpec(**bandit) if bandit is not None else None,
                guardrails=Guardrails(**guardrails),
                **values,
            )
        except (KeyError, TypeError) as exc:
            raise DefinitionError(f"deployment spec is malformed: {exc}") from None


@dataclass(frozen=True)
class Deployment:
    """An endpoint's current spec and where it came from; ``revision`` grows by one with
    every change, so servers poll it to notice changes."""

    endpoint: str
    revision: int
    spec: DeploymentSpec
    updated_at: datetime
    updated_by: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "revision": self.revision,
            "spec": self.spec.to_dict(),
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
            "reason": self.reason,
        }
