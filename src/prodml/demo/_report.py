"""The demo's HTML report: the monitoring page of the ``flight_delay`` endpoint (stored
windows and retrain jobs, as ``prodml monitor report`` writes it) opened by a section on
the closed loop — realized ROC-AUC per month of the model the endpoint served, the static
January–March model and the monthly-expanding oracle, the month table, the means over
June–August and April–December, and each promotion's check against the model it replaced.

The section is rendered from the loop's own record (:func:`prodml.demo._loop.run_loop`),
nothing is recomputed; its chart is monitoring's inline-SVG line chart. Every string from
the record is escaped; a missing value is a gap in the chart and "—" in a table.

>>> loop = {"months": [
...     {"month": "2013-04", "flights": 2, "late_rate": 0.5, "served_auc": 0.7,
...      "served_ece": 0.02, "static_auc": 0.7, "static_ece": 0.02, "oracle_auc": None,
...      "served_models": ["flight_delay:1"]}],
...     "summary": {}, "promotions": [], "events": []}
>>> section = loop_section(loop)
>>> section.anchor, "flight_delay:1" in section.html, "<svg" in section.html
('closed-loop', True, True)
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prodml.monitoring import ReportSection, Series, line_chart
from prodml.project import write_project_report

if TYPE_CHECKING:
    from prodml.project import Project

__all__ = ["LOOP_ANCHOR", "loop_section", "write_report"]

#: The id of the closed-loop section on the page (``report.html#closed-loop``).
LOOP_ANCHOR = "closed-loop"
ENDPOINT = "flight_delay"
#: The three models of the month table: (key prefix, name in the legend, colour).
_MODELS = (
    ("served", "served (the managed endpoint)", "#1f77b4"),
    ("static", "static (January–March model)", "#ff7f0e"),
    ("oracle", "oracle (monthly expanding)", "#2ca02c"),
)
_MONTH = re.compile(r"(\d{4})-(\d{2})")


def _num(value: Any) -> float | None:
    """A finite float, or None for None, NaN, infinities, booleans and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _f3(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.3f}"


def _pct(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.1%}"


def _count(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:,.0f}"


def _short(month: str) -> str:
    """``2013-07`` → ``Jul`` (any other text as it is)."""
    found = _MONTH.fullmatch(month)
    if found is None or not 1 <= int(found[2]) <= 12:
        return month
    return calendar.month_abbr[int(found[2])]


def _chart(months: Sequence[Mapping[str, Any]]) -> str:
    labels = [_short(str(m.get("month", ""))) for m in months]
    series = [Series(name, [_num(m.get(f"{key}_auc")) for m in months], color)
              for key, name, color in _MODELS]  # fmt: skip
    svg = line_chart(labels, series, width=640, height=280)
    axis = "font-size:12px;color:#38434e"
    return (
        "<figure><figcaption>Realized ROC-AUC per month, the three models scored on the same "
        "labelled flights</figcaption>"
        '<div style="display:flex;align-items:center;gap:2px">'
        f'<span style="writing-mode:vertical-rl;transform:rotate(180deg);{axis}">ROC-AUC</span>'
        f'<div>{svg}<div style="text-align:center;{axis}">month of departure, 2013</div></div>'
        "</div></figure>"
    )


def _month_table(months: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in (
        "Month", "flights", "late rate", "served AUC", "served ECE", "static AUC",
        "static ECE", "oracle AUC", "served by"))  # fmt: skip
    rows = []
    for m in months:
        served = _num(m.get("served_auc"))
        static = _num(m.get("static_auc"))
        behind = served is not None and static is not None and served < static - 0.01
        bad = ' class="bad" title="more than 0.01 below the static model"' if behind else ""
        models = ", ".join(f"<code>{escape(str(v))}</code>" for v in m.get("served_models") or ())
        cells = [
            f"<td>{escape(str(m.get('month', '')))}</td>",
            f"<td>{_count(m.get('flights'))}</td>",
            f"<td>{_pct(m.get('late_rate'))}</td>",
            f"<td{bad}>{_f3(served)}</td>",
            f"<td>{_f3(m.get('served_ece'))}</td>",
            f"<td>{_f3(static)}</td>",
            f"<td>{_f3(m.get('static_ece'))}</td>",
            f"<td>{_f3(m.get('oracle_auc'))}</td>",
            f'<td style="text-align:left">{models or "—"}</td>',
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="months"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


def _summary_table(summary: Mapping[str, Any]) -> str:
    rows = []
    for key, name in (("served_auc", "served ROC-AUC"), ("static_auc", "static ROC-AUC"),
                      ("oracle_auc", "oracle ROC-AUC"), ("served_ece", "served ECE"),
                      ("static_ece", "static ECE")):  # fmt: skip
        rows.append(f"<tr><td>{name}</td><td>{_f3(summary.get(f'{key}_jun_aug'))}</td>"
                    f"<td>{_f3(summary.get(f'{key}_apr_dec'))}</td></tr>")  # fmt: skip
    return ('<table class="summary"><thead><tr><th>Mean over the months</th><th>Jun–Aug</th>'
            f"<th>Apr–Dec</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")  # fmt: skip


def _promotions(promotions: Sequence[Mapping[str, Any]]) -> str:
    if not promotions:
        return '<p class="note">No promotion happened in this replay.</p>'
    head = "".join(f"<th>{h}</th>" for h in (
        "Promoted", "new champion", "replaced", "next flights", "new AUC", "old AUC",
        "difference", "check"))  # fmt: skip
    rows = []
    for p in promotions:
        new, old = _num(p.get("new_auc")), _num(p.get("old_auc"))
        diff = "—" if new is None or old is None else f"{new - old:+.3f}"
        verdict = (
            '<span class="badge ok">ok</span>'
            if p.get("ok")
            else '<span class="bad" title="the new model scored more than 0.01 below the old">'
            "WORSE</span>"
        )
        rows.append(
            f"<tr><td>{escape(str(p.get('time', ''))[:10])}</td>"
            f"<td><code>{escape(str(p.get('new', '')))}</code></td>"
            f"<td><code>{escape(str(p.get('old', '')))}</code></td>"
            f"<td>{_count(p.get('flights'))}</td><td>{_f3(new)}</td><td>{_f3(old)}</td>"
            f"<td>{diff}</td><td>{verdict}</td></tr>"
        )
    return (f'<div class="scroll"><table class="promotions"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


def loop_section(loop: Mapping[str, Any]) -> ReportSection:
    """The closed-loop section of ``loop`` (``run_loop``'s record: ``months``,
    ``summary``, ``promotions``, ``events``)."""
    months = list(loop.get("months") or ())
    promotions = list(loop.get("promotions") or ())
    events = list(loop.get("events") or ())
    retrains = sum(1 for e in events if e.get("kind") == "retrain")
    actions = sorted({str(e.get("action")) for e in events if e.get("kind") == "rollout"})
    rollouts = sum(1 for e in events if e.get("kind") == "rollout")
    span = (f"{escape(str(months[0].get('month', '')))} → "
            f"{escape(str(months[-1].get('month', '')))}" if months else "no month")  # fmt: skip
    meta = (
        f'<p class="meta">{span} · {retrains} retrain job{"s" * (retrains != 1)}, '
        f"{rollouts} rollout decision{'s' * (rollouts != 1)}"
        + (f" ({escape(', '.join(actions))})" if actions else "")
        + f", {len(promotions)} promotion{'s' * (len(promotions) != 1)}</p>"
    )
    intro = (
        '<p class="note">Each month\'s labelled flights scored by the model the endpoint '
        "actually served (the retraining and rollout controllers' champion), by the static "
        "January–March model, and by the oracle: the candidate of the retrain job at the "
        "month's start (the same recipe refitted on every flight labelled before the month) "
        "as if promoted at once.</p>"
    )
    body = (
        [intro, meta, _chart(months)] if months else
        [intro, meta, '<p class="note">The loop scored no month.</p>']
    )  # fmt: skip
    body += [
        "<h4>Month by month</h4>", _month_table(months) if months else "",
        "<h4>Means</h4>", _summary_table(loop.get("summary") or {}),
        "<h4>Promotions: the new champion against the one it replaced, on the next 30 days' "
        "flights (WORSE: more than 0.01 below)</h4>", _promotions(promotions),
    ]  # fmt: skip
    return ReportSection(LOOP_ANCHOR, "The closed loop", "".join(body))


def write_report(project: Project, loop: Mapping[str, Any], path: Path) -> Path:
    """Write the demo's page to ``path`` (atomically): the loop's section, the stored
    monitoring windows of the endpoint and its retrain jobs."""
    title = f"prodml demo: {project.name}"
    write_project_report(
        project, path, title=title, endpoint=ENDPOINT, sections=[loop_section(loop)]
    )
    return path
