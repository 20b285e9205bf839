"""The blessing gate: a candidate is BLESSED only when every configured check passes.

Checks are value thresholds (``roc_auc >= 0.70``), changes against the champion (overall
and per slice), a latency budget, the robustness suite and, with ``fail_on_leakage``, the
leakage check — suspect features and feature views of exact-time ties alike (without
it, suspected leaks are ``warnings`` that leave the status as is). A bad threshold text or a change on a metric of unknown direction is a
:class:`ConfigError`; a metric the report lacks, or a NaN metric, is a failed check.
The first model (no champion) is judged on value thresholds alone: its change thresholds
appear as one passed ``"champion"`` check saying they were skipped.

>>> parse_threshold("roc_auc >= 0.70")
Threshold(metric='roc_auc', op='>=', value=0.7)
>>> report = EvaluationReport("classification", 1000, {"roc_auc": 0.684}, {}, None, {})
>>> result = judge(report, config=GateConfig(thresholds=("roc_auc >= 0.70",), robustness=False))
>>> result.status, result.reasons
('NOT_BLESSED', ['roc_auc 0.684 < 0.700'])
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from prodml.core import GateConfig, MetricChange
from prodml.core.errors import ConfigError, SchemaError
from prodml.training._evaluate import EvaluationReport
from prodml.training._leakage import LeakageReport
from prodml.training._metrics import METRIC_DIRECTIONS

__all__ = ["GateCheck", "GateResult", "Threshold", "judge", "parse_threshold"]

Op = Literal[">=", ">", "<=", "<"]
Direction = Literal["higher", "lower"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
#: The relation that holds when a comparison fails, for the failure message.
_NEGATED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_THRESHOLD = re.compile(rf"\s*([A-Za-z_]\w*)\s*(>=|<=|>|<)\s*({_NUMBER})\s*")


@dataclass(frozen=True)
class Threshold:
    """A value threshold such as ``roc_auc >= 0.7``."""

    metric: str
    op: Op
    value: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    def holds(self, value: float) -> bool:
        """Whether ``value`` satisfies the threshold (never for NaN)."""
        return _OPS[self.op](value, self.value)


def parse_threshold(text: str) -> Threshold:
    """Parse ``"metric op number"`` with op one of ``>=``, ``>``, ``<=``, ``<``."""
    match = _THRESHOLD.fullmatch(text)
    if match is None:
        raise ConfigError(
            f"gate threshold {text!r}: expected the form 'metric >= number' "
            "with an operator among >=, >, <=, <"
        )
    metric, op, value = match.groups()
    ops: dict[str, Op] = {">=": ">=", ">": ">", "<=": "<=", "<": "<"}
    return Threshold(metric=metric, op=ops[op], value=float(value))


@dataclass(frozen=True)
class GateCheck:
    """One rule applied to the candidate; ``detail`` says what was seen, with numbers."""

    name: str
    passed: bool
    detail: str
    metric: str | None = None
    value: float | None = None
    reference: float | None = None
    slice: str | None = None


@dataclass(frozen=True)
class GateResult:
    """The verdict: BLESSED iff every check passed; ``champion`` is the compared version;
    ``warnings`` are findings that do not decide the status (suspected leakage)."""

    status: Literal["BLESSED", "NOT_BLESSED"]
    checks: tuple[GateCheck, ...]
    champion: str | None
    warnings: tuple[str, ...] = ()

    @property
    def blessed(self) -> bool:
        """True when the candidate may be registered as blessed."""
        return self.status == "BLESSED"

    @property
    def reasons(self) -> list[str]:
        """The details of the failed checks."""
        return [check.detail for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (check values are finite or ``None``)."""
        return {
            "status": self.status,
            "champion": self.champion,
            "checks": [asdict(check) for check in self.checks],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        """Rebuild a result from :meth:`to_dict` output."""
        try:
            status = data["status"]
            if status not in ("BLESSED", "NOT_BLESSED"):
                raise SchemaError(
                    f"gate result: status must be BLESSED or NOT_BLESSED, got {status!r}"
                )
            checks = tuple(GateCheck(**check) for check in data["checks"])
            warnings = tuple(str(w) for w in data.get("warnings", ()))
            return cls(
                status=status, checks=checks, champion=data.get("champion"), warnings=warnings
            )
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"gate result: missing or malformed field {exc}") from None


def judge(
    candidate: EvaluationReport,
    *,
    config: GateConfig,
    champion: EvaluationReport | None = None,
    champion_ref: str | None = None,
    robustness_passed: bool | None = None,
    robustness_detail: str = "",
    leakage: LeakageReport | None = None,
) -> GateResult:
    """Apply every rule of ``config`` to ``candidate`` (and ``champion``, when there is one);
    ``leakage``'s suspect features and views become warnings, and a failed check with
    ``fail_on_leakage``."""
    thresholds = [parse_threshold(text) for text in config.thresholds]
    changes = [(change, _direction(change)) for change in config.change]
    checks = [_value_check(candidate, threshold) for threshold in thresholds]
    if champion is None:
        if changes:
            skipped = ", ".join(change.metric for change, _ in changes)
            detail = (
                f"no champion: change thresholds ({skipped}) skipped; "
                "the first model is judged on value thresholds alone"
            )
            checks.append(GateCheck(name="champion", passed=True, detail=detail))
    else:
        vs = f"champion {champion_ref}" if champion_ref else "champion"
        for change, direction in changes:
            value, reference = _lookup(candidate, change.metric), _lookup(champion, change.metric)
            checks.append(_change_check(change, direction, value, reference, vs=vs))
            if change.per_slice:
                checks.extend(_slice_checks(candidate, champion, change, direction, vs))
    if config.latency_p99_ms is not None:
        checks.append(_latency_check(candidate, config.latency_p99_ms))
    if config.robustness:
        checks.append(_robustness_check(robustness_passed, robustness_detail))
    if leakage is not None and config.fail_on_leakage:
        checks.append(_leakage_check(leakage))
    status: Literal["BLESSED", "NOT_BLESSED"] = (
        "BLESSED" if all(check.passed for check in checks) else "NOT_BLESSED"
    )
    warnings = () if leakage is None else tuple(leakage.warnings)
    return GateResult(status=status, checks=tuple(checks), champion=champion_ref, warnings=warnings)


def _value_check(report: EvaluationReport, threshold: Threshold) -> GateCheck:
    metric, bound = threshold.metric, _num(threshold.value)
    value = _lookup(report, metric)
    if value is None:
        known = ", ".join(sorted({*report.metrics, *report.performance})) or "none"
        detail = f"{metric}: no such metric in the evaluation report; it has {known}"
    elif math.isnan(value):
        detail = f"{metric} is undefined (NaN) on this data; needs {threshold.op} {bound}"
    else:
        passed = threshold.holds(value)
        op = threshold.op if passed else _NEGATED[threshold.op]
        detail = f"{metric} {_num(value)} {op} {bound}"
        return GateCheck(str(threshold), passed, detail, metric, value, threshold.value)
    return GateCheck(str(threshold), False, detail, metric, None, threshold.value)


def _change_check(
    change: MetricChange,
    direction: Direction,
    value: float | None,
    reference: float | None,
    *,
    vs: str,
    where: str | None = None,
) -> GateCheck:
    metric = change.metric
    name = f"{metric} vs champion" + (f" [{where}]" if where else "")
    scope = f" in slice {where}" if where else ""
    if value is None or reference is None or math.isnan(value) or math.isnan(reference):
        who, number = (
            ("candidate", value) if value is None or math.isnan(value) else (vs, reference)
        )
        state = "missing" if number is None else "undefined (NaN)"
        detail = f"{metric} {state}{scope} for the {who}; cannot compare"
        return GateCheck(name, False, detail, metric, _finite(value), _finite(reference), where)
    loss = reference - value if direction == "higher" else value - reference
    if change.relative:
        loss = loss / abs(reference) if reference else (math.inf if loss > 0 else 0.0)
    fmt = _pct if change.relative else _num
    verb = _verb(direction, value - reference)
    moved = verb if verb == "unchanged" else f"{verb} {fmt(abs(loss))}"
    detail = (
        f"{metric}{scope} {moved} vs {vs} ({_num(reference)} → {_num(value)}), "
        f"allowed {fmt(change.max_degradation)}"
    )
    passed = loss <= change.max_degradation
    return GateCheck(name, passed, detail, metric, value, reference, where)


def _slice_checks(
    candidate: EvaluationReport,
    champion: EvaluationReport,
    change: MetricChange,
    direction: Direction,
    vs: str,
) -> list[GateCheck]:
    checks = []
    for column in sorted(candidate.slices.keys() & champion.slices.keys()):
        mine, theirs = candidate.slices[column], champion.slices[column]
        for value in sorted(mine.keys() & theirs.keys()):
            checks.append(
                _change_check(
                    change,
                    direction,
                    mine[value].metrics.get(change.metric),
                    theirs[value].metrics.get(change.metric),
                    vs=vs,
                    where=f"{column}={value}",
                )
            )
    return checks


def _latency_check(report: EvaluationReport, budget: float) -> GateCheck:
    metric = "latency_p99_ms"
    value = _finite(report.performance.get(metric))
    if value is None:
        detail = f"{metric} not measured; the budget is {_num(budget)} ms"
        return GateCheck(metric, False, detail, metric, None, budget)
    passed = value <= budget
    detail = f"{metric} {_num(value)} ms {'<=' if passed else '>'} budget {_num(budget)} ms"
    return GateCheck(metric, passed, detail, metric, value, budget)


def _robustness_check(passed: bool | None, detail: str) -> GateCheck:
    if passed is None:
        return GateCheck(name="robustness", passed=False, detail="robustness suite not run")
    verdict = "robustness suite passed" if passed else "robustness suite failed"
    return GateCheck(
        name="robustness", passed=passed, detail=f"{verdict}: {detail}" if detail else verdict
    )


def _leakage_check(leakage: LeakageReport) -> GateCheck:
    suspects, views = leakage.suspects, leakage.suspect_views
    if not leakage.findings:
        detail = (
            f"no feature suspected of leakage ({len(leakage.features)} checked), no feature "
            f"view of exact-time ties ({len(leakage.views)} checked)"
        )
        return GateCheck(name="leakage", passed=True, detail=detail)
    found = []
    if suspects:
        names = ", ".join(repr(name) for name in suspects)
        found.append(f"{len(suspects)} feature(s) suspected of leaking the label: {names}")
    if views:
        names = ", ".join(repr(name) for name in views)
        found.append(f"{len(views)} feature view(s) of exact-time ties: {names}")
    detail = f"{'; '.join(found)} (fail_on_leakage = true; see the warnings)"
    return GateCheck(name="leakage", passed=False, detail=detail)


def _direction(change: MetricChange) -> Direction:
    if change.direction is not None:
        return change.direction
    known = METRIC_DIRECTIONS.get(change.metric)
    if known is None:
        raise ConfigError(
            f"gate change on {change.metric!r}: direction unknown for this metric; "
            'set direction = "higher" or "lower"'
        )
    return known


def _lookup(report: EvaluationReport, metric: str) -> float | None:
    """A metric from ``metrics``, else from ``performance``; None when in neither."""
    return report.metrics.get(metric, report.performance.get(metric))


def _finite(x: float | None) -> float | None:
    """None for a missing or NaN number, so checks hold only JSON-safe values."""
    return None if x is None or math.isnan(x) else x


def _verb(direction: Direction, delta: float) -> str:
    if delta == 0:
        return "unchanged"
    worse = delta < 0 if direction == "higher" else delta > 0
    if direction == "higher":
        return "dropped" if worse else "rose"
    return "rose" if worse else "fell"


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1000:
        return f"{x:,.1f}"
    if x != 0 and abs(x) < 0.01:
        return f"{x:.3g}"
    return f"{x:.3f}"


def _pct(x: float) -> str:
    return "inf%" if math.isinf(x) else f"{x * 100:.1f}%"
