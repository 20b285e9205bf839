"""One controller pass's decision for one endpoint, from its plan, its state and the
experiment analysis: pure rules, no I/O, so every rule is tested on its own.

A canary decides ``rollback`` at once on a sample-ratio mismatch, a breached guardrail
or a primary metric that is worse by the sequential test; otherwise ``hold`` while the
step bakes, ``advance`` to the next step, and at the last step ``promote`` when the
challenger is better (always-valid confidence sequence above 0, estimate at least the
minimum practical effect) and every guardrail is shown non-inferior — or ``stop`` when
it cannot be (better by less than the minimum effect, or out of time). A plan that
promotes on ``not_worse`` needs only the guardrails non-inferior and a primary metric
that is not worse. An A/B plan
decides ``ship | stop | continue`` by the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prodml.rollout._plan import RolloutPlan
from prodml.rollout._state import RolloutState

__all__ = ["Verdict", "decide", "evidence_of"]

Analysis = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """``action`` (advance, hold, promote, rollback, stop; ship, continue), a ``code``
    naming the rule that decided (holds with the same code are recorded once), the
    human ``reason``, and for ``ship`` the arm to ship."""

    action: str
    code: str
    reason: str
    arm: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def decide(
    plan: RolloutPlan, state: RolloutState, analysis: Analysis | None, now: datetime
) -> Verdict:
    """The decision of this pass (``analysis`` None: no records yet)."""
    if plan.kind == "ab":
        return _decide_ab(plan, state, analysis, now)
    return _decide_canary(plan, state, analysis, now)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _comparison(analysis: Analysis, arm: str) -> Mapping[str, Any] | None:
    return next((c for c in analysis.get("comparisons", ()) if c.get("arm") == arm), None)


def _invalid(analysis: Analysis) -> Verdict | None:
    srm = analysis.get("srm")
    if srm and srm.get("mismatch"):
        return Verdict(
            "rollback",
            "srm",
            f"sample ratio mismatch: routing units {srm.get('observed')} against expected "
            f"counts {srm.get('expected')}, χ² p = {_fmt(srm.get('p'))} < "
            f"{_fmt(srm.get('threshold'))}: the split is biased and the comparison invalid",
        )
    return None


def _breaches(comparison: Mapping[str, Any]) -> list[str]:
    return [
        f"guardrail {g['metric']} breached: worse by {_fmt(g.get('worse_by'))} "
        f"(always-valid CI [{_fmt(g.get('lower'))}, {_fmt(g.get('upper'))}]) against an "
        f"allowance of {_fmt(g.get('allowance'))}"
        for g in comparison.get("guardrails", ())
        if g.get("status") == "breached"
    ]


def _pending(comparison: Mapping[str, Any]) -> list[str]:
    return [
        g["metric"] for g in comparison.get("guardrails", ()) if g.get("status") != "non_inferior"
    ]


def _primary(comparison: Mapping[str, Any], metric: str) -> str:
    seq = comparison.get("sequential") or {}
    return (
        f"{metric} improvement {_fmt(comparison.get('improvement'))} (always-valid CI "
        f"[{_fmt(seq.get('lower'))}, {_fmt(seq.get('upper'))}], p = {_fmt(seq.get('pvalue'))}, "
        f"n = {comparison.get('n_champion')} champion / {comparison.get('n_arm')} arm)"
    )


def _against(plan: RolloutPlan, comparison: Mapping[str, Any]) -> Verdict | None:
    """Rollback for a breached guardrail or a worse primary metric, else None."""
    breaches = _breaches(comparison)
    if breaches:
        return Verdict("rollback", "guardrail", "; ".join(breaches))
    if comparison.get("verdict") == "worse":
        return Verdict(
            "rollback", "worse", f"challenger is worse: {_primary(comparison, plan.metric)}"
        )
    return None


def _ready(plan: RolloutPlan, comparison: Mapping[str, Any]) -> bool:
    if plan.promote_on == "not_worse":
        return comparison.get("verdict") != "worse" and not _pending(comparison)
    return (
        comparison.get("verdict") == "better"
        and bool(comparison.get("practical"))
        and not _pending(comparison)
    )


def _too_small(plan: RolloutPlan, comparison: Mapping[str, Any]) -> bool:
    """Better, but the sequence shows the effect is below the minimum practical one."""
    upper = (comparison.get("sequential") or {}).get("upper")
    return plan.min_effect > 0 and upper is not None and upper < plan.min_effect


def _out_of_time(plan: RolloutPlan, state: RolloutState, now: datetime) -> bool:
    limit = plan.max_duration_s
    return limit is not None and (now - state.started_at).total_seconds() >= limit


def _decide_canary(
    plan: RolloutPlan, state: RolloutState, analysis: Analysis | None, now: datetime
) -> Verdict:
    step = plan.steps[state.step]
    baked = (now - state.step_started_at).total_seconds()
    comparison = None if analysis is None else _comparison(analysis, state.challenger_arm)
    if analysis is not None:
        invalid = _invalid(analysis)
        if invalid is not None:
            return invalid
    if comparison is not None:
        against = _against(plan, comparison)
        if against is not None:
            return against
    units = _step_units(analysis, state.challenger_arm)
    if baked < step.bake_s or units < step.min_samples:
        return Verdict(
            "hold",
            "baking",
            f"step {state.step + 1}/{len(plan.steps)} ({step.weight:.0%}) baking: "
            f"{baked:.0f} s of {step.bake_s:.0f} s, {units} of {step.min_samples} challenger "
            "units",
        )
    if state.step < plan.last_step:
        nxt = plan.steps[state.step + 1]
        summary = "no records yet" if comparison is None else _primary(comparison, plan.metric)
        return Verdict(
            "advance",
            "advance",
            f"step {state.step + 1} ({step.weight:.0%}) passed with no guardrail breached and "
            f"{summary}; to step {state.step + 2} ({nxt.weight:.0%})",
        )
    if comparison is not None and _ready(plan, comparison):
        if plan.require_approval and state.approved_by is None:
            return Verdict(
                "hold",
                "awaiting_approval",
                f"ready to promote ({_primary(comparison, plan.metric)}); waiting for "
                "`prodml rollout approve`",
            )
        if plan.promote_on == "not_worse":
            return Verdict(
                "promote",
                "promote",
                f"challenger is not worse: {_primary(comparison, plan.metric)}, and every "
                "guardrail non-inferior",
            )
        return Verdict(
            "promote",
            "promote",
            f"challenger is better: {_primary(comparison, plan.metric)}, at least the minimum "
            f"effect {plan.min_effect:g}, and every guardrail non-inferior",
        )
    if (
        comparison is not None
        and comparison.get("verdict") == "better"
        and _too_small(plan, comparison)
    ):
        return Verdict(
            "stop",
            "too_small",
            f"challenger is better but by less than the minimum effect {plan.min_effect:g}: "
            f"{_primary(comparison, plan.metric)}",
        )
    if _out_of_time(plan, state, now):
        return Verdict(
            "stop",
            "out_of_time",
            f"no decision within max_duration {plan.max_duration_s:.0f} s: "
            + ("no records" if comparison is None else _primary(comparison, plan.metric)),
        )
    pending = [] if comparison is None else _pending(comparison)
    return Verdict(
        "hold",
        "collecting",
        "collecting evidence: "
        + ("no comparison yet" if comparison is None else _primary(comparison, plan.metric))
        + (f"; guardrails not yet shown non-inferior: {pending}" if pending else ""),
    )


def _decide_ab(
    plan: RolloutPlan, state: RolloutState, analysis: Analysis | None, now: datetime
) -> Verdict:
    if analysis is None:
        return Verdict("continue", "collecting", "no records yet")
    invalid = _invalid(analysis)
    if invalid is not None:
        return Verdict("stop", invalid.code, invalid.reason + "; not shipping")
    comparisons: Sequence[Mapping[str, Any]] = analysis.get("comparisons", ())
    for comparison in comparisons:
        breaches = _breaches(comparison)
        if breaches:
            return Verdict("stop", "guardrail", f"arm {comparison['arm']}: " + "; ".join(breaches))
    winners = [c for c in comparisons if _ready(plan, c)]
    if winners:
        best = max(winners, key=lambda c: c.get("improvement") or 0.0)
        if plan.require_approval and state.approved_by is None:
            return Verdict(
                "continue",
                "awaiting_approval",
                f"arm {best['arm']} wins ({_primary(best, plan.metric)}); waiting for "
                "`prodml rollout approve`",
                arm=best["arm"],
            )
        return Verdict(
            "ship",
            "ship",
            f"arm {best['arm']} wins: {_primary(best, plan.metric)}",
            arm=best["arm"],
        )
    if comparisons and all(c.get("verdict") == "worse" for c in comparisons):
        return Verdict("stop", "worse", "every arm is worse than the champion")
    if _out_of_time(plan, state, now):
        return Verdict("stop", "out_of_time", f"no winner within {plan.max_duration_s:.0f} s")
    return Verdict(
        "continue",
        "collecting",
        "; ".join(f"arm {c['arm']}: {_primary(c, plan.metric)}" for c in comparisons)
        or "no comparison yet",
    )


def _step_units(analysis: Analysis | None, arm: str) -> int:
    """Routing units the challenger received in the current step (the SRM window)."""
    if analysis is None:
        return 0
    srm = analysis.get("srm") or {}
    units = dict(zip(srm.get("arms", ()), srm.get("observed", ()), strict=False))
    return int(units.get(arm, 0))


def evidence_of(verdict: Verdict, analysis: Analysis | None, arm: str | None) -> dict[str, Any]:
    """What a decision records: the rule, the reason, and the numbers it read (the
    compared arm's comparison, SRM and per-arm counts; not segments or time series)."""
    out: dict[str, Any] = {"rule": verdict.code, "reason": verdict.reason, **verdict.details}
    if analysis is None:
        return out
    keep = ("arm", "role", "model_versions", "shadow", "records", "units", "labelled",
            "error_rate", "latency_p99_ms", "metric")  # fmt: skip
    out["window"] = {"start": analysis.get("start"), "end": analysis.get("end")}
    out["metric"] = analysis.get("metric")
    out["arms"] = [{k: a.get(k) for k in keep} for a in analysis.get("arms", ())]
    out["srm"] = analysis.get("srm")
    comparison = None if arm is None else _comparison(analysis, arm)
    if comparison is not None:
        out["comparison"] = comparison
    return out
