"""``prodml rollout report``: one self-contained HTML page per endpoint's experiment —
arms and their traffic over time, the primary metric's effect with its intervals over
time, the guardrails, the sample-ratio check, the shadow arms' paired comparisons and
every decision with its reason.

Rendered from the records (the status, the analysis and the deployment history), never
computed here; the charts and styles are the monitoring report's, so the page opens
offline.

>>> html = render_rollout_report({"endpoint": "e", "status": "active", "plan": {},
...     "state": {}, "decisions": []}, None, generated_at=datetime(2013, 6, 1))
>>> "<h1>Rollout of e</h1>" in html and "No records yet" in html
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

from prodml.core import NotFoundError
from prodml.monitoring import REPORT_CSS, Series, line_chart

if TYPE_CHECKING:
    from prodml.registry import DeploymentStore
    from prodml.rollout._controller import Rollouts

__all__ = ["render_rollout_analysis", "render_rollout_report", "rollout_report"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _f(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else escape(str(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else f"{value:,}"


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, cls: str = "") -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{cell if isinstance(cell, _Raw) else _f(cell)}</td>" for cell in row)
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table class="{cls}"><tr>{head}</tr>{body}</table></div>'


class _Raw(str):
    """Markup already escaped."""


def _text(value: Any) -> _Raw:
    return _Raw(escape("" if value is None else str(value)))


def render_rollout_report(
    status: Mapping[str, Any],
    analysis: Mapping[str, Any] | None,
    *,
    history: Sequence[Mapping[str, Any]] = (),
    generated_at: datetime,
) -> str:
    """The page for one endpoint: ``status`` from ``Rollouts.status``, ``analysis`` an
    ``ExperimentAnalysis.to_dict()`` (None: no records yet), ``history`` the deployment's
    changes."""
    endpoint = str(status.get("endpoint"))
    plan = status.get("plan") or {}
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Rollout of {escape(endpoint)}</title><style>{REPORT_CSS}</style></head>",
        f"<body><main><h1>Rollout of {escape(endpoint)}</h1>",
        f'<p class="meta">Generated {escape(generated_at.isoformat(timespec="seconds"))} · '
        f"status <b>{escape(str(status.get('status')))}</b> · plan {escape(str(plan.get('kind', '–')))}"
        f" · primary metric {escape(str(plan.get('metric', '–')))}</p>",
        '<section class="endpoint">',
        _plan(plan, status.get("state") or {}),
    ]
    parts.append(render_rollout_analysis(analysis))
    parts.append(_decisions(status.get("decisions") or [], history))
    parts.append("</section></main></body></html>\n")
    return "".join(parts)


def render_rollout_analysis(analysis: Mapping[str, Any] | None) -> str:
    """The analysis part of the page (arms, the effect over time with its intervals,
    comparisons and guardrails, SRM, paired shadow arms, bandit), for a page of its own
    (the dashboard's endpoint page); None: a note that there are no records yet."""
    if analysis is None:
        return '<p class="note">No records yet: the analysis appears with traffic.</p>'
    return "".join([_arms(analysis), _over_time(analysis), _comparisons(analysis),
                    _srm(analysis), _paired(analysis), _bandit(analysis)])  # fmt: skip


def _plan(plan: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    steps = plan.get("steps") or []
    current = state.get("step")
    cells = [
        f"<b>{s['weight']:.0%}</b>" if i == current else f"{s['weight']:.0%}"
        for i, s in enumerate(steps)
    ]
    rows = [
        ("challenger", _text(plan.get("challenger"))),
        ("steps", _Raw(" → ".join(cells) + (" → promote" if steps else ""))),
        ("guardrails", _text(", ".join(
            f"{g['metric']} ≤ {g['margin'] * 100:g}%" if g.get("relative") else f"{g['metric']} ≤ {g['margin']:g}"
            for g in plan.get("guardrails") or []
        ))),
        ("started", _text(state.get("started_at"))),
        ("approved by", _text(state.get("approved_by"))),
    ]  # fmt: skip
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<h2>Plan</h2><dl class="facts">{facts}</dl>'


def _arms(analysis: Mapping[str, Any]) -> str:
    rows = [
        (
            _text(a.get("arm") + (" (shadow)" if a.get("shadow") else "")), _text(a.get("role")),
            _text(", ".join(a.get("model_versions") or ())), a.get("records"), a.get("units"),
            a.get("labelled"), a.get("error_rate"), a.get("latency_p99_ms"),
            (a.get("metric") or {}).get("value"),
        )
        for a in analysis.get("arms", ())
    ]  # fmt: skip
    columns = ["arm", "role", "model", "records", "units", "labelled", "error rate",
               "p99 ms", str(analysis.get("metric"))]  # fmt: skip
    return "<h3>Arms</h3>" + _table(columns, rows)


def _over_time(analysis: Mapping[str, Any]) -> str:
    buckets = analysis.get("over_time") or []
    if not buckets:
        return ""
    labels = [str(b["start"])[:13].replace("T", " ") for b in buckets]
    arms = sorted({arm for b in buckets for arm in b.get("arms", {})})
    traffic = [
        Series(arm, [b["arms"].get(arm, {}).get("n") for b in buckets], _COLORS[i % len(_COLORS)])
        for i, arm in enumerate(arms)
    ]
    compared = sorted({arm for b in buckets for arm in b.get("comparisons", {})})
    effects = [
        Series(
            f"{arm} − champion",
            [b["comparisons"].get(arm, {}).get("estimate") for b in buckets],
            _COLORS[(i + 1) % len(_COLORS)],
            lower=[b["comparisons"].get(arm, {}).get("ci_low") for b in buckets],
            upper=[b["comparisons"].get(arm, {}).get("ci_high") for b in buckets],
        )
        for i, arm in enumerate(compared)
    ]
    metric = escape(str(analysis.get("metric")))
    out = '<h3>Over time</h3><div class="grid">'
    out += f"<figure><figcaption>Labelled rows per arm</figcaption>{line_chart(labels, traffic, floor=0)}</figure>"
    if effects:
        out += (
            f"<figure><figcaption>{metric}: arm − champion with its interval</figcaption>"
            f"{line_chart(labels, effects)}</figure>"
        )
    return out + "</div>"


def _comparisons(analysis: Mapping[str, Any]) -> str:
    out = []
    for c in analysis.get("comparisons", ()):
        seq = c.get("sequential") or {}
        out.append(
            f"<h3>{escape(str(c.get('arm')))} against the champion</h3>"
            + _table(
                [
                    "n champion",
                    "n arm",
                    "estimate",
                    "improvement",
                    "always-valid CI",
                    "p (always valid)",
                    "verdict",
                    "practical",
                    "power",
                ],
                [
                    (
                        c.get("n_champion"),
                        c.get("n_arm"),
                        c.get("estimate"),
                        c.get("improvement"),
                        _Raw(f"[{_f(seq.get('lower'))}, {_f(seq.get('upper'))}]"),
                        seq.get("pvalue"),
                        _text(c.get("verdict")),
                        _text(c.get("practical")),
                        c.get("power"),
                    )
                ],
            )
            + _table(
                [
                    "guardrail",
                    "champion",
                    "arm",
                    "worse by",
                    "always-valid CI",
                    "allowance",
                    "status",
                ],
                [
                    (
                        _text(g.get("metric")),
                        g.get("champion_value"),
                        g.get("arm_value"),
                        g.get("worse_by"),
                        _Raw(f"[{_f(g.get('lower'))}, {_f(g.get('upper'))}]"),
                        g.get("allowance"),
                        _Raw(f'<span class="bad">{escape(str(g.get("status")))}</span>')
                        if g.get("status") == "breached"
                        else _text(g.get("status")),
                    )
                    for g in c.get("guardrails", ())
                ],
            )
        )
    return "".join(out)


def _srm(analysis: Mapping[str, Any]) -> str:
    srm = analysis.get("srm")
    if not srm:
        return ""
    verdict = (
        '<span class="bad">mismatch: the split is biased</span>' if srm.get("mismatch") else "ok"
    )
    return "<h3>Sample ratio</h3>" + _table(
        ["arms", "observed units", "expected units", "χ² p", "verdict"],
        [(_text(", ".join(map(str, srm.get("arms", [])))),
          _text(", ".join(map(str, srm.get("observed", [])))),
          _text(", ".join(f"{x:,.0f}" for x in srm.get("expected", []))), srm.get("p"),
          _Raw(verdict))],
    )  # fmt: skip


def _paired(analysis: Mapping[str, Any]) -> str:
    paired = analysis.get("paired") or []
    if not paired:
        return ""
    rows = []
    for p in paired:
        for name, c in (p.get("metrics") or {}).items():
            rows.append((_text(p.get("shadow")), _text(p.get("live")), _text(name), c.get("n"),
                         c.get("value_a"), c.get("value_b"), c.get("difference"),
                         _Raw(f"[{_f(c.get('ci_low'))}, {_f(c.get('ci_high'))}]"), c.get("p_value")))  # fmt: skip
    return "<h3>Shadow arms, paired on the same requests</h3>" + _table(
        ["shadow", "live", "metric", "n", "live value", "shadow value", "difference", "CI", "p"],
        rows,
    )


def _bandit(analysis: Mapping[str, Any]) -> str:
    bandit = analysis.get("bandit")
    if not bandit:
        return ""
    rows = [
        (_text(name), a.get("rewards"), a.get("mean_reward"), a.get("posterior_mean"),
         a.get("posterior_sd"), a.get("prob_best"), a.get("mean_propensity"))
        for name, a in (bandit.get("arms") or {}).items()
    ]  # fmt: skip
    return (
        f"<h3>Bandit ({escape(str(bandit.get('kind')))} rewards): estimated regret "
        f"{_f(bandit.get('regret'))}</h3>"
        + _table(
            [
                "arm",
                "rewards",
                "mean reward",
                "posterior mean",
                "posterior sd",
                "P(best)",
                "mean propensity",
            ],
            rows,
        )
    )


def _decisions(decisions: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (_text(str(d.get("time"))[:19]), _text(d.get("decision", d.get("action"))),
         d.get("step"), d.get("revision"), _text(d.get("actor")), _text(d.get("reason")))
        for d in decisions
    ]  # fmt: skip
    out = "<h3>Decisions</h3>" + (
        _table(["time", "decision", "step", "revision", "actor", "reason"], rows, cls="results")
        if rows
        else '<p class="note">No decisions yet.</p>'
    )
    if history:
        changes = [
            (h.get("revision"), _text(h.get("action")), _text(h.get("actor")),
             _text(str(h.get("time"))[:19]), _text(h.get("reason")))
            for h in history
        ]  # fmt: skip
        out += (
            "<details><summary>Deployment history</summary>"
            + _table(["revision", "action", "actor", "time", "reason"], changes, cls="results")
            + "</details>"
        )
    return out


def rollout_report(rollouts: Rollouts, deployments: DeploymentStore, endpoint: str, *,
                   generated_at: datetime) -> str:  # fmt: skip
    """The page of ``endpoint``'s rollout from its records (the analysis is None while
    the endpoint has no prediction records)."""
    status = rollouts.status(endpoint, decisions=500)
    try:
        analysis: dict[str, Any] | None = rollouts.analyze(endpoint).to_dict()
    except NotFoundError:
        analysis = None
    history = deployments.history(endpoint)
    return render_rollout_report(status, analysis, history=history, generated_at=generated_at)
