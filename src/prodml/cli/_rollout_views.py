"""What ``prodml rollout`` and ``prodml ab`` print for people: decisions, a rollout's
status and an experiment analysis, rendered from their ``to_dict()`` data (the same
data ``--json`` prints)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prodml.cli._output import stdout, styled, table, warn

__all__ = ["show_analysis", "show_decision", "show_status"]


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, spec)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ci(lower: Any, upper: Any) -> str:
    return "" if lower is None and upper is None else f"[{_fmt(lower)}, {_fmt(upper)}]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def show_decision(decision: Mapping[str, Any]) -> None:
    revision = decision.get("revision")
    stdout.print(
        styled(
            "{time} [bold]{endpoint}[/]: {action} → {status}{revision}: {reason}",
            time=str(decision.get("time", ""))[:19],
            endpoint=decision.get("endpoint"),
            action=decision.get("action"),
            status=decision.get("status"),
            revision="" if revision is None else f" (revision {revision})",
            reason=decision.get("reason"),
        ),
        soft_wrap=True,
    )


def show_status(data: Mapping[str, Any]) -> None:
    plan, state = data["plan"], data["state"]
    stdout.print(
        styled(
            "[bold]{endpoint}[/]: rollout {status} ({kind}), started {started}, {passes} passes",
            endpoint=data["endpoint"],
            status=data["status"],
            kind=plan["kind"],
            started=str(state.get("started_at"))[:19],
            passes=state.get("passes", 0),
        )
    )
    stdout.print(
        styled(
            "metric {metric} (min effect {effect:g}), α {alpha:g}; champion {champion}, "
            "challenger {challenger}; approval {approval}",
            metric=plan["metric"],
            effect=plan["min_effect"],
            alpha=plan["alpha"],
            champion=state.get("champion_model"),
            challenger=state.get("challenger_model") or "-",
            approval=(
                f"by {state['approved_by']}"
                if state.get("approved_by")
                else "required"
                if plan.get("require_approval")
                else "not required"
            ),
        )
    )
    if plan["kind"] == "canary":
        current = state.get("step", 0)
        table(
            "Steps",
            ["step", "weight", "bake", "min samples", ""],
            [
                (
                    i + 1,
                    f"{s['weight']:.2%}",
                    _duration(s["bake_s"]),
                    f"{s['min_samples']:,}",
                    "◀ current" if i == current else "done" if i < current else "",
                )
                for i, s in enumerate(plan["steps"])
            ],
        )
    table(
        "Guardrails",
        ["metric", "margin"],
        [
            (g["metric"], f"{g['margin']:.4g}" + (" of the champion's" if g["relative"] else ""))
            for g in plan["guardrails"]
        ],
    )
    spec = data["deployment"]["spec"]
    table(
        f"Deployment revision {data['deployment']['revision']}"
        + (" (paused)" if spec.get("paused") else ""),
        ["arm", "role", "model", "weight"],
        [(a["name"], a["role"], a["model"], f"{a['weight']:g}") for a in spec["arms"]],
    )
    table(
        "Decisions",
        ["time", "decision", "step", "revision", "actor", "reason"],
        [
            (
                str(d.get("time", ""))[:19],
                d.get("decision"),
                None if d.get("step") is None else d["step"] + 1,
                d.get("revision"),
                d.get("actor"),
                d.get("reason"),
            )
            for d in data.get("decisions", ())
        ],
    )
    if data.get("analysis") is not None:
        show_analysis(data["analysis"])
    elif data.get("analysis_error"):
        warn([data["analysis_error"]])


def _arms(arms: Sequence[Mapping[str, Any]], metric: str) -> None:
    table(
        "Arms",
        ["arm", "role", "models", "records", "units", "labelled", metric, "error rate",
         "p99 ms"],
        [
            (a["arm"] + (" (shadow)" if a.get("shadow") else ""), a.get("role"),
             ", ".join(a.get("model_versions") or ()), _fmt(a.get("records")),
             _fmt(a.get("units")), _fmt(a.get("labelled")),
             _fmt((a.get("metric") or {}).get("value")), _fmt(a.get("error_rate")),
             _fmt(a.get("latency_p99_ms")))
            for a in arms
        ],
    )  # fmt: skip


def _comparisons(comparisons: Sequence[Mapping[str, Any]], champion: Any) -> None:
    table(
        f"Against the champion ({champion})",
        ["arm", "n (champion / arm)", "champion", "arm", "improvement", "always-valid CI",
         "p", "verdict", "practical", "power"],
        [
            (c["arm"], f"{_fmt(c.get('n_champion'))} / {_fmt(c.get('n_arm'))}",
             _fmt(c.get("champion_value")), _fmt(c.get("arm_value")),
             _fmt(c.get("improvement")), _ci(*_sequential(c)[:2]), _fmt(_sequential(c)[2]),
             c.get("verdict"), _fmt(c.get("practical")), _fmt(c.get("power")))
            for c in comparisons
        ],
    )  # fmt: skip
    table(
        "Guardrails",
        ["arm", "metric", "champion", "arm", "worse by", "CI", "allowance", "status"],
        [
            (c["arm"], g["metric"], _fmt(g.get("champion_value")), _fmt(g.get("arm_value")),
             _fmt(g.get("worse_by")), _ci(g.get("lower"), g.get("upper")),
             _fmt(g.get("allowance")), g.get("status"))
            for c in comparisons
            for g in c.get("guardrails") or ()
        ],
    )  # fmt: skip


def _sequential(comparison: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    seq = comparison.get("sequential") or {}
    return seq.get("lower"), seq.get("upper"), seq.get("pvalue")


def _srm(srm: Mapping[str, Any] | None) -> None:
    if not srm:
        stdout.print("SRM: not checked (no expected weights for two or more arms)")
        return
    verdict = "[bold red]mismatch[/]: the split is biased" if srm.get("mismatch") else "ok"
    stdout.print(
        styled(
            "SRM: units {observed} against expected {expected} (arms {arms}), χ² p = {p}: "
            + verdict,
            observed=srm.get("observed"), expected=[round(e, 1) for e in srm.get("expected") or ()],
            arms=srm.get("arms"), p=_fmt(srm.get("p")),
        ),
        soft_wrap=True,
    )  # fmt: skip


def _paired(paired: Sequence[Mapping[str, Any]]) -> None:
    rows = [
        (p["shadow"], p["live"], _fmt(p.get("n")), name, _fmt(m.get("value_a")),
         _fmt(m.get("value_b")), _fmt(m.get("difference")), _ci(m.get("ci_low"), m.get("ci_high")),
         _fmt(m.get("p_value")))
        for p in paired
        for name, m in (p.get("metrics") or {}).items()
    ]  # fmt: skip
    if rows:
        table(
            "Shadow arms against the live arm on the same requests (shadow − live)",
            ["shadow", "live", "n", "metric", "live value", "shadow value", "difference", "CI",
             "p"],
            rows,
        )  # fmt: skip


def _segments(segments: Mapping[str, Any] | None) -> None:
    for arm, view in (segments or {}).items():
        table(
            f"Segments of {arm} ({view.get('method')}-adjusted)",
            ["segment", "n (champion / arm)", "effect", "CI", "p", "p adjusted"],
            [
                (s.get("segment"), f"{_fmt(s.get('n_a'))} / {_fmt(s.get('n_b'))}",
                 _fmt(s.get("effect")), _ci(s.get("ci_low"), s.get("ci_high")),
                 _fmt(s.get("p_value")), _fmt(s.get("p_adjusted")))
                for s in view.get("segments") or ()
            ],
        )  # fmt: skip


def show_analysis(data: Mapping[str, Any]) -> None:
    """An :class:`~prodml.rollout.ExperimentAnalysis`'s ``to_dict()`` as tables."""
    stdout.print(
        styled(
            "[bold]Experiment on {endpoint}[/]: {metric} ({direction} is better), {start} to {end}",
            endpoint=data.get("endpoint"), metric=data.get("metric"),
            direction="higher" if data.get("higher_is_better") else "lower",
            start=str(data.get("start"))[:19], end=str(data.get("end"))[:19],
        )
    )  # fmt: skip
    _arms(data.get("arms") or (), str(data.get("metric")))
    _comparisons(data.get("comparisons") or (), data.get("champion"))
    _srm(data.get("srm"))
    _paired(data.get("paired") or ())
    _segments(data.get("segments"))
