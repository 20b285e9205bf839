"""A rollout plan: how one endpoint's challenger earns its traffic, stored with the
deployment and read by every controller pass.

``kind = "canary"`` walks the challenger through ``steps`` (its share of live traffic,
e.g. 1% → 5% → 25% → 50%), each held for at least ``bake`` and until the challenger has
``min_samples`` requests in the step, then promotes it when the primary metric is better
by the sequential test (and by ``min_effect`` in practice), every guardrail is shown
non-inferior, and — with ``require_approval`` — a human approved. With ``promote_on =
"not_worse"`` (a retrained candidate the offline gate already found better on the
latest labelled rows) the last step promotes once every guardrail is shown
non-inferior and the primary metric is not worse: list the primary metric among the
guardrails to bound how much worse it may be. ``kind = "ab"`` keeps
the deployment's weights and decides ``ship | stop | continue`` by the same rules.

>>> plan = RolloutPlan.from_dict({"challenger": "flight_delay:2", "steps": [0.05, 0.5]})
>>> [(s.weight, s.bake_s, s.min_samples) for s in plan.steps]
[(0.05, 3600.0, 1000), (0.5, 3600.0, 1000)]
>>> plan.metric, [g.metric for g in plan.guardrails]
('log_loss', ['error_rate', 'fallback_rate', 'p99_latency_ms', 'prediction_shift'])
>>> RolloutPlan.from_dict(plan.to_dict()) == plan
True
>>> RolloutPlan.from_dict({"kind": "ab", "weights": {"a": 0.5, "b": 0.4}})
Traceback (most recent call last):
...
prodml.core.errors.DefinitionError: rollout plan: weights must sum to 1, got {'a': 0.5, 'b': 0.4} (sum 0.9)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from prodml.core import DefinitionError, check_name, parse_duration
from prodml.rollout._metrics import PRIMARY_METRICS, Guardrail, metric_info

__all__ = ["DEFAULT_GUARDRAILS", "DEFAULT_STEPS", "RolloutPlan", "Step"]

DEFAULT_STEPS = (0.01, 0.05, 0.25, 0.5)
DEFAULT_GUARDRAILS = (
    Guardrail("error_rate", 0.01),
    Guardrail("fallback_rate", 0.01),
    Guardrail("p99_latency_ms", 0.25, relative=True),
    Guardrail("prediction_shift", 0.25),
)
_OWNER = "rollout plan"


def _seconds(value: Any, name: str) -> float:
    """A duration given as seconds or as text such as ``30m``/``1h``."""
    if isinstance(value, str):
        try:
            return parse_duration(value, field=f"{_OWNER}: {name}").total_seconds()
        except ValueError as exc:
            raise DefinitionError(str(exc)) from None
        except OverflowError:  # more days than a timedelta holds
            raise DefinitionError(
                f"{_OWNER}: {name} {value!r} is too long: expected a duration such as '30m' or '7d'"
            ) from None
    return _number(value, name, 0.0)


def _number(value: Any, name: str, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DefinitionError(f"{_OWNER}: {name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise DefinitionError(f"{_OWNER}: {name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _count(value: Any, name: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DefinitionError(f"{_OWNER}: {name} must be an integer >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class Step:
    """One canary step: the challenger's share of live traffic, held for ``bake_s``
    seconds at least and until the challenger answered ``min_samples`` requests in it."""

    weight: float
    bake_s: float = 3600.0
    min_samples: int = 1000

    def __post_init__(self) -> None:
        weight = _number(self.weight, "step weight", 0.0, 1.0)
        if weight <= 0.0 or weight >= 1.0:
            raise DefinitionError(
                f"{_OWNER}: a canary step's weight must be in (0, 1) — promotion is the step "
                f"to 100% — got {self.weight!r}"
            )
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bake_s", _seconds(self.bake_s, "step bake"))
        object.__setattr__(self, "min_samples", _count(self.min_samples, "step min_samples"))

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "bake_s": self.bake_s, "min_samples": self.min_samples}


@dataclass(frozen=True)
class RolloutPlan:
    """What the controller does with one endpoint (see the module docstring).

    ``challenger`` is the model version a canary plan deploys (``name:version`` or
    ``name@alias``, resolved when the plan starts); ``weights`` are an A/B plan's arm
    weights (they must sum to 1; None: keep the deployment's). ``planned_n`` is the
    per-arm labelled sample the sequential test is tuned to (None: the largest step
    minimum, at least 1,000 — fixed for the experiment); ``max_duration_s`` stops an
    experiment that has not decided by then. A promotion needs the version BLESSED by
    its gate (``require_blessed``) and approved in the registry (``require_approved``);
    ``require_approval`` adds a human's ``prodml rollout approve`` of the rollout itself.
    """

    kind: Literal["canary", "ab"] = "canary"
    challenger: str | None = None
    steps: tuple[Step, ...] = tuple(Step(w) for w in DEFAULT_STEPS)
    weights: Mapping[str, float] | None = None
    metric: str = "log_loss"
    min_effect: float = 0.0
    guardrails: tuple[Guardrail, ...] = DEFAULT_GUARDRAILS
    alpha: float = 0.05
    planned_n: int | None = None
    require_approval: bool = False
    require_blessed: bool = True
    require_approved: bool = True
    decommission_delay_s: float = 3600.0
    max_duration_s: float | None = None
    segment_by: str | None = None
    promote_on: Literal["better", "not_worse"] = "better"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("canary", "ab"):
            raise DefinitionError(f"{_OWNER}: kind must be 'canary' or 'ab', got {self.kind!r}")
        metric_info(self.metric, allowed=PRIMARY_METRICS)
        steps = tuple(self.steps)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "guardrails", tuple(self.guardrails))
        if self.kind == "canary":
            if not isinstance(self.challenger, str) or not (
                ":" in self.challenger or "@" in self.challenger
            ):
                raise DefinitionError(
                    f"{_OWNER}: a canary plan needs challenger, a model version 'name:version' "
                    f"or 'name@alias', got {self.challenger!r}"
                )
            if not steps:
                raise DefinitionError(f"{_OWNER}: a canary plan needs at least one step")
            weights = [s.weight for s in steps]
            if any(b <= a for a, b in itertools.pairwise(weights)):
                raise DefinitionError(
                    f"{_OWNER}: step weights must increase strictly, got {weights}"
                )
        if self.weights is not None:
            self._check_weights(self.weights)
        names = [g.metric for g in self.guardrails]
        if len(set(names)) != len(names):
            raise DefinitionError(f"{_OWNER}: one guardrail per metric, got {names}")
        object.__setattr__(self, "min_effect", _number(self.min_effect, "min_effect", 0.0))
        _number(self.alpha, "alpha", 1e-9, 0.5)
        if self.planned_n is not None:
            _count(self.planned_n, "planned_n", 2)
        object.__setattr__(
            self, "decommission_delay_s", _seconds(self.decommission_delay_s, "decommission_delay")
        )
        if self.max_duration_s is not None:
            object.__setattr__(
                self, "max_duration_s", _seconds(self.max_duration_s, "max_duration")
            )
        if self.promote_on not in ("better", "not_worse"):
            raise DefinitionError(
                f"{_OWNER}: promote_on must be 'better' or 'not_worse', got {self.promote_on!r}"
            )
        for name in ("require_approval", "require_blessed", "require_approved"):
            if not isinstance(getattr(self, name), bool):
                raise DefinitionError(f"{_OWNER}: {name} must be true or false")
        if self.segment_by is not None and not (
            isinstance(self.segment_by, str) and self.segment_by
        ):
            raise DefinitionError(
                f"{_OWNER}: segment_by must be a column name, got {self.segment_by!r}"
            )
        if not isinstance(self.extra, Mapping):
            raise DefinitionError(f"{_OWNER}: extra must be a table, got {self.extra!r}")

    @staticmethod
    def _check_weights(weights: Mapping[str, float]) -> None:
        if not isinstance(weights, Mapping) or len(weights) < 2:
            raise DefinitionError(
                f"{_OWNER}: weights must map at least two arm names to weights, got {weights!r}"
            )
        for arm, weight in weights.items():
            check_name(arm, kind="deployment arm")
            _number(weight, f"weight of arm {arm!r}", 0.0, 1.0)
        total = math.fsum(weights.values())
        if abs(total - 1.0) > 1e-9:
            raise DefinitionError(
                f"{_OWNER}: weights must sum to 1, got {dict(weights)} (sum {total:g})"
            )

    @property
    def last_step(self) -> int:
        return len(self.steps) - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "challenger": self.challenger,
            "steps": [s.to_dict() for s in self.steps],
            "weights": None if self.weights is None else dict(self.weights),
            "metric": self.metric,
            "min_effect": self.min_effect,
            "guardrails": [g.to_dict() for g in self.guardrails],
            "alpha": self.alpha,
            "planned_n": self.planned_n,
            "require_approval": self.require_approval,
            "require_blessed": self.require_blessed,
            "require_approved": self.require_approved,
            "decommission_delay_s": self.decommission_delay_s,
            "max_duration_s": self.max_duration_s,
            "segment_by": self.segment_by,
            "promote_on": self.promote_on,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutPlan:
        """Read :meth:`to_dict` output or a hand-written plan (TOML/JSON): ``steps`` may
        be weights or step tables, durations seconds or text (``30m``); a plan-level
        ``bake``/``min_samples`` applies to each step that does not set its own."""
        if not isinstance(data, Mapping):
            raise DefinitionError(f"{_OWNER}: expected a table of settings, got {data!r}")
        values = dict(data)
        try:
            for short in ("bake", "decommission_delay", "max_duration"):
                if short in values and values.get(f"{short}_s") is None:
                    values[f"{short}_s"] = values.pop(short)
            # a plan-level bake/min_samples is the default of every step given as a weight
            defaults: dict[str, Any] = {
                k: values.pop(k) for k in ("bake_s", "min_samples") if k in values
            }
            steps = values.get("steps", DEFAULT_STEPS)
            values["steps"] = tuple(_step(s, defaults) for s in _sequence(steps, "steps"))
            if "guardrails" in values:
                values["guardrails"] = tuple(
                    g if isinstance(g, Guardrail) else Guardrail.from_dict(_mapping(g))
                    for g in _sequence(values["guardrails"], "guardrails")
                )
            return cls(**values)
        except TypeError as exc:
            raise DefinitionError(f"{_OWNER} is malformed: {exc}") from None


def _sequence(value: Any, name: str) -> Sequence[Any]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DefinitionError(f"{_OWNER}: {name} must be a list, got {value!r}")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DefinitionError(f"{_OWNER}: expected a table, got {value!r}")
    return value


def _step(value: Any, defaults: Mapping[str, Any]) -> Step:
    if isinstance(value, Step):
        return value
    if isinstance(value, Mapping):
        data = dict(value)
        if "bake" in data and "bake_s" not in data:
            data["bake_s"] = data.pop("bake")
        data = {**defaults, **data}
        try:
            return Step(**data)
        except TypeError as exc:
            raise DefinitionError(f"{_OWNER}: step is malformed: {exc}") from None
    return Step(value, **defaults)
