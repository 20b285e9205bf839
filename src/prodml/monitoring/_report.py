"""The monitoring report: one self-contained HTML page rendered from stored windows and
their results (nothing is computed from predictions here) — per endpoint and arm, live
arms first: a summary, the input drift heatmap, realized and estimated performance,
calibration, latency and errors, data quality and every result in a collapsed table —
and, when the caller hands in the retrain jobs' records, a retraining section
(:mod:`prodml.monitoring._report_retraining`). A layer above monitoring adds its own
sections (e.g. the demo's closed loop) as :class:`ReportSection` values of pre-rendered
HTML, shown first, so monitoring never imports it.

The page uses inline CSS and inline SVG (:mod:`prodml.monitoring._svg`) only: no
JavaScript and no external URL, so it opens offline and can be mailed or archived. Every
string from the results is escaped; a missing value is a gap in a chart and "—" in a table.

>>> from datetime import UTC, timedelta
>>> t = datetime(2024, 5, 1, tzinfo=UTC)
>>> w = StoredWindow(1, "fraud", "main", "v1", False, t, t + timedelta(days=1), 10,
...                  "computed", 0, True)
>>> page = render_report([w], {1: [Result("operational", "rows", 10.0)]}, title="Daily",
...                      generated_at=t)
>>> page.startswith("<!DOCTYPE html>"), "fraud" in page, "<script" in page
(True, True, False)
>>> extra = ReportSection("loop", "The loop", "<p>served &lt; oracle</p>")
>>> page = render_report([w], {}, title="Daily", generated_at=t, sections=[extra])
>>> '<a href="#loop">The loop</a>' in page, page.index('id="loop"') < page.index('id="endpoint-1"')
(True, True)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from html import escape
from typing import Any

from prodml.core import ConflictError, ensure_utc
from prodml.monitoring._checks import Result
from prodml.monitoring._drift import PVALUE_METHODS
from prodml.monitoring._report_retraining import RetrainRecord, render_retraining
from prodml.monitoring._store import StoredWindow
from prodml.monitoring._svg import (
    Bars,
    Cell,
    HeatRow,
    Point,
    Series,
    heatmap,
    line_chart,
    nice_ticks,
    reliability_chart,
)

__all__ = [
    "REPORT_CSS",
    "ReportSection",
    "mean_absolute_error",
    "render_endpoint_section",
    "render_report",
]

Key = tuple[str, str, str]
_NAMES = {"roc_auc": "ROC-AUC", "accuracy": "accuracy", "rmse": "RMSE", "mae": "MAE"}
_BLUE, _ORANGE, _PURPLE, _RED = "#1f77b4", "#ff7f0e", "#7b52ab", "#d62728"
_LATENCY = (("latency_p50_ms", "p50", "#2ca02c"), ("latency_p95_ms", "p95", _ORANGE),
            ("latency_p99_ms", "p99", _RED))  # fmt: skip
_QUALITY = ("missing_rate", "out_of_range_rate", "unseen_category_rate", "non_finite_rate")
REPORT_CSS = """
body{margin:0;background:#eef1f4;color:#1d2329;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}main{max-width:1240px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:20px;margin:0 0 6px}h3{font-size:17px;
margin:18px 0 6px}h4{font-size:14px;margin:18px 0 6px;color:#38434e}code{font-size:.95em}
.meta,.note{color:#66707a}.note{font-style:italic}nav a{margin-right:14px}
.endpoint{background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:16px 22px;
margin:18px 0}.arm{border-top:2px solid #e4e8ec;margin-top:16px}
.badge{font-size:11px;font-weight:600;border-radius:9px;padding:1px 8px;
vertical-align:middle}.live{background:#e3f2e6;color:#1b5e20}
.shadow{background:#ede7f6;color:#4a2c83}.ok{background:#e3f2e6;color:#1b5e20}
.failed{background:#fdecea;color:#b3001b}.pending{background:#fff4e0;color:#8a5300}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}
dl.facts dt{color:#66707a}dl.facts dd{margin:0}
.grid{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start}
figure{margin:0}figcaption{font-size:12.5px;font-weight:600;margin:4px 0}
svg{max-width:100%;height:auto}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0}
th,td{padding:3px 9px;border-bottom:1px solid #eceff2;text-align:right;white-space:nowrap}
th{background:#f5f7f9;font-weight:600}th:first-child,td:first-child{text-align:left}
tfoot td{font-weight:600;border-top:1px solid #c9d0d7}.when{color:#66707a;font-size:11px}
.bad{color:#b3001b;font-weight:600}details{margin-top:14px}summary{cursor:pointer}
table.results td{text-align:left}table.results td.details{white-space:normal;
font-family:ui-monospace,monospace;font-size:11px;max-width:520px;word-break:break-all}
"""


_ANCHOR = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class ReportSection:
    """A section a caller adds to the page: ``html`` is its body, already rendered and
    escaped by the caller (the page inserts it as is), under an ``<h2>`` ``title`` in a
    ``<section id="anchor">`` that the page's navigation links to."""

    anchor: str
    title: str
    html: str

    def __post_init__(self) -> None:
        if not _ANCHOR.fullmatch(self.anchor):
            raise ValueError(
                f"ReportSection.anchor: expected a letter then letters, digits, '-' or '_', "
                f"got {self.anchor!r}"
            )


def _num(value: Any) -> float | None:
    """A finite float, or None for None, NaN, infinities, booleans and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) >= 1000 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _f3(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "<0.1%" if 0 < value < 0.001 else f"{value:.1%}"


def _full(moment: datetime) -> str:
    return ensure_utc(moment).strftime("%Y-%m-%d %H:%M")


def mean_absolute_error(
    estimated: Sequence[float | None], realized: Sequence[float | None]
) -> float | None:
    """Mean of ``|estimated - realized|`` over the windows that have both (None if none).

    >>> round(mean_absolute_error([0.8, 0.9, None], [0.7, None, 0.5]), 6)
    0.1
    >>> mean_absolute_error([None], [0.5]) is None
    True
    """
    errors = [abs(e - r) for e, r in zip(estimated, realized, strict=True)
              if e is not None and r is not None]  # fmt: skip
    return sum(errors) / len(errors) if errors else None


@dataclass(frozen=True)
class _Arm:
    """One arm of one endpoint: its windows in time order (the endpoint's empty windows
    included, as gaps) and each window's results, as stored and by (check, metric, column)."""

    name: str
    shadow: bool
    windows: list[StoredWindow]
    stored: list[list[Result]]
    index: list[dict[Key, Result]]
    labels: list[str]

    def values(self, check: str, metric: str, column: str = "") -> list[float | None]:
        return [_num(r.value) if (r := i.get((check, metric, column))) else None
                for i in self.index]  # fmt: skip

    def details(self, check: str, metric: str, key: str) -> list[float | None]:
        return [_num((r.details or {}).get(key)) if (r := i.get((check, metric, ""))) else None
                for i in self.index]  # fmt: skip

    def live(self) -> list[StoredWindow]:
        return [w for w in self.windows if w.status != "empty"]


def _arms(windows: Sequence[StoredWindow], results: Mapping[int, Sequence[Result]]) -> list[_Arm]:
    """The endpoint's arms, live ones first, each over its windows plus the empty ones."""
    empty = [w for w in windows if w.status == "empty"]
    day = all(w.start.time() == w.end.time() == datetime.min.time() for w in windows)
    out = []
    for shadow, name in sorted({(w.shadow, w.arm) for w in windows if w.status != "empty"}):
        own = [w for w in windows if (w.shadow, w.arm) == (shadow, name) and w.status != "empty"]
        ordered = sorted([*own, *empty], key=lambda w: (w.start, w.end, w.model_version))
        labels = [w.start.strftime("%m-%d" if day else "%m-%d %H:%M")
                  for w in ordered]  # fmt: skip
        stored = [list(results.get(w.id, ())) for w in ordered]
        index = [{(r.check, r.metric, r.column): r for r in rs} for rs in stored]
        out.append(_Arm(name, shadow, ordered, stored, index, labels))
    return out


def render_report(
    windows: Sequence[StoredWindow],
    results: Mapping[int, Sequence[Result]],
    *,
    title: str,
    generated_at: datetime,
    retraining: Sequence[RetrainRecord] | None = None,
    sections: Sequence[ReportSection] = (),
) -> str:
    """One HTML document: the caller's ``sections`` first (their HTML as given), then
    ``windows`` (any endpoints) and their ``results`` by window id, then the
    ``retraining`` jobs' section (None: no such section; empty: a note that no job ran);
    times are shown in UTC (naive ones are taken as UTC). A section whose anchor is
    taken (by another section, an endpoint or the retraining section) is a ConflictError."""
    windows = [replace(w, start=ensure_utc(w.start), end=ensure_utc(w.end)) for w in windows]
    endpoints = sorted({w.endpoint for w in windows})
    span = (
        f" · windows {_full(min(w.start for w in windows))} → "
        f"{_full(max(w.end for w in windows))} UTC"
        if windows
        else ""
    )
    links = [(section.anchor, section.title) for section in sections]
    links += [(f"endpoint-{k}", name) for k, name in enumerate(endpoints, 1)]
    if retraining is not None:
        links.append(("retraining", "Retraining"))
    anchors = [anchor for anchor, _ in links]
    if taken := sorted({a for a in anchors if anchors.count(a) > 1}):
        raise ConflictError(f"report sections: anchor {taken[0]!r} is used twice on the page")
    nav = "".join(f'<a href="#{anchor}">{escape(name)}</a>' for anchor, name in links)
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{REPORT_CSS}</style></head><body><main>",
        f'<h1>{escape(title)}</h1><p class="meta">Generated {escape(_full(generated_at))} UTC'
        f" · {len(endpoints)} endpoint{'s' * (len(endpoints) != 1)}{escape(span)}</p>",
        f"<nav>{nav}</nav>" if len(links) > 1 else "",
    ]
    for section in sections:
        parts.append(f'<section class="endpoint" id="{section.anchor}">'
                     f"<h2>{escape(section.title)}</h2>{section.html}</section>")  # fmt: skip
    for k, name in enumerate(endpoints, 1):
        mine = [w for w in windows if w.endpoint == name]
        parts.append(_endpoint(f"endpoint-{k}", name, mine, results))
    if not endpoints:
        parts.append('<p class="note">No monitoring windows in this range.</p>')
    if retraining is not None:
        parts.append(render_retraining(retraining))
    parts.append("</main></body></html>\n")
    return "".join(parts)


def render_endpoint_section(
    name: str, windows: Sequence[StoredWindow], results: Mapping[int, Sequence[Result]]
) -> str:
    """One endpoint's section of the report (its arms' drift, performance, calibration,
    operations and quality over ``windows``), for a page of its own (the dashboard)."""
    if not windows:
        return (f'<p class="note">No monitoring windows for endpoint <code>{escape(name)}'
                "</code> yet: run <code>prodml monitor run</code>.</p>")  # fmt: skip
    ordered = [replace(w, start=ensure_utc(w.start), end=ensure_utc(w.end)) for w in windows]
    return _endpoint("endpoint-1", name, ordered, results)


def _endpoint(
    anchor: str, name: str, windows: list[StoredWindow], results: Mapping[int, Sequence[Result]]
) -> str:
    arms = _arms(windows, results)
    empty = sum(w.status == "empty" for w in windows)
    start, end = _full(min(w.start for w in windows)), _full(max(w.end for w in windows))
    head = (
        f'<section class="endpoint" id="{anchor}"><h2>Endpoint <code>{escape(name)}</code></h2>'
        f'<p class="meta">{len(windows)} windows{f" ({empty} empty)" if empty else ""} · '
        f"{start} → {end} UTC · "
        f"{sum(w.rows for w in windows):,} rows · {len(arms)} arm{'s' * (len(arms) != 1)}</p>"
    )
    if not arms:
        note = (f'<p class="note">All {len(windows)} windows were empty: no predictions were '
                "logged for this endpoint in this range.</p>")  # fmt: skip
        return head + note + "</section>"
    body = [_arm(f"{anchor}-arm-{j}", arm) for j, arm in enumerate(arms, 1)]
    return head + "".join(body) + "</section>"


def _arm(anchor: str, arm: _Arm) -> str:
    kind = "shadow" if arm.shadow else "live"
    name = escape(arm.name) if arm.name else "(default)"
    return "".join([
        f'<section class="arm" id="{anchor}"><h3>Arm <code>{name}</code> '
        f'<span class="badge {kind}">{kind}</span></h3>', _facts(arm),
        "<h4>Input drift</h4>", _drift(arm),
        "<h4>Performance over time</h4>", _performance(arm),
        "<h4>Estimated vs realized performance</h4>", _estimated(arm),
        "<h4>Calibration</h4>", _calibration(arm),
        "<h4>Latency and errors</h4>", _operations(arm),
        "<h4>Data quality</h4>", _quality(arm),
        _all_results(arm), "</section>",
    ])  # fmt: skip


def _facts(arm: _Arm) -> str:
    live = arm.live()
    versions = []
    for version in dict.fromkeys(w.model_version for w in live):
        seen = [w for w in live if w.model_version == version]
        versions.append(f"<code>{escape(version)}</code> ({len(seen)} windows, "
                        f"{_full(seen[0].start)} → {_full(seen[-1].end)})")  # fmt: skip
    rows, labelled = sum(w.rows for w in live), sum(w.label_rows for w in live)
    few = sum(w.status == "too_few_rows" for w in live)
    share = arm.values("drift", "share")
    drifted = sum(r.status == "drift" for i in arm.index if (r := i.get(("drift", "share", ""))))
    facts = {
        "Model versions": ", ".join(versions),
        "Windows": f"{len(live)} with predictions"
        + f", {len(arm.windows) - len(live)} empty" * (len(arm.windows) > len(live))
        + f", {few} with too few rows" * (few > 0),
        "Range": f"{_full(arm.windows[0].start)} → {_full(arm.windows[-1].end)} UTC",
        "Rows": f"{rows:,} ({labelled:,} labelled, {_pct(labelled / rows if rows else None)})",
    }
    scored = sum(v is not None for v in share)
    if scored:
        facts["Dataset drift"] = f"in {drifted} of {scored} scored windows"
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts.items())
        + "</dl>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def _when(arm: _Arm, i: int) -> str:
    w = arm.windows[i]
    return f"{_full(w.start)} → {_full(w.end)}" + (
        f" · {w.model_version}" if w.model_version else ""
    )


def _heat(r: Result) -> float | None:
    """Statistic relative to its threshold (p-value tests: threshold / adjusted p-value),
    on the heat scale where 0.5 is the threshold and 1 is twice it or more."""
    if r.status not in ("ok", "drift") or not r.threshold:
        return None
    if r.metric in PVALUE_METHODS:
        p = _num((r.details or {}).get("adjusted_pvalue"))
        ratio = None if p is None else r.threshold / max(p, 1e-12)
    else:
        value = _num(r.value)
        ratio = None if value is None else value / r.threshold
    return None if ratio is None else min(max(ratio, 0.0), 2.0) / 2


def _drift_cell(arm: _Arm, i: int, name: str, r: Result | None, share: bool = False) -> Cell:
    if r is None:
        return Cell(None, f"{name}\n{_when(arm, i)}\nno result")
    statistic = "share" if share else r.metric
    tip = (f"{name}\n{_when(arm, i)}\n{statistic} = {_fmt(_num(r.value))} "
           f"(threshold {_fmt(r.threshold)}) · {r.status}")  # fmt: skip
    details = r.details or {}
    if details.get("adjusted_pvalue") is not None:
        tip += f"\nadjusted p-value {_fmt(_num(details['adjusted_pvalue']))}"
    if details.get("reason"):
        tip += f"\n{details['reason']}"
    if share and details.get("top"):
        top = [f"{t.get('column')} {_fmt(_num(t.get('value')))}" for t in details["top"]]
        tip += "\ntop: " + ", ".join(top)
    value = _num(r.value)
    text = (_pct(value) if share else f"{value:.2g}") if value is not None else ""
    return Cell(_heat(r), tip, r.status == "drift", text)


def _drift(arm: _Arm) -> str:
    by_column: list[dict[str, Result]] = [
        {r.column: r for r in rs if r.check == "drift" and r.metric != "share" and r.column}
        for rs in arm.stored
    ]
    features = list(dict.fromkeys(c for cols in by_column for c in cols))
    n = len(arm.windows)
    rows = [HeatRow(f, [_drift_cell(arm, i, f, by_column[i].get(f)) for i in range(n)])
            for f in features]  # fmt: skip
    scores = [next((r for r in rs if r.check == "prediction" and r.column == "prediction"
                    and r.metric != "positive_rate"), None) for rs in arm.stored]  # fmt: skip
    if any(s is not None for s in scores):
        cells = [_drift_cell(arm, i, "prediction score", s) for i, s in enumerate(scores)]
        rows.append(HeatRow("prediction score", cells, "prediction-cell"))
    shares = [i.get(("drift", "share", "")) for i in arm.index]
    if features:
        cells = [_drift_cell(arm, i, "dataset drift share", s, True) for i, s in enumerate(shares)]
        rows.append(HeatRow("dataset drift share", cells, "share-cell"))
    note = ""
    if not features:
        why = (
            "Shadow arms are not checked for input drift"
            if arm.shadow
            else "No input drift results"
        )
        note = _note(why + (": only the prediction score is shown." if rows else "."))
    if not rows:
        return note
    svg = heatmap(rows, arm.labels, scale=("0", "threshold", "≥ 2× threshold"))
    return f'{note}<div class="scroll">{svg}</div>'


def _performance(arm: _Arm) -> str:
    regression = any(v is not None for v in arm.values("performance", "rmse"))
    metrics = ("rmse", "mae") if regression else ("roc_auc", "accuracy")
    coverage = arm.values("performance", "label_coverage")
    series = []
    for metric, color in zip(metrics, (_BLUE, _ORANGE), strict=True):
        series.append(Series(_NAMES[metric], arm.values("performance", metric), color))
        reference = arm.details("performance", metric, "reference")
        if any(v is not None for v in reference):
            series.append(Series(f"{_NAMES[metric]} reference", reference, color, dashed=True))
    if not any(v is not None for s in series for v in s.values) and not any(coverage):
        return _note("No labels have been joined to these windows yet.")
    bars = Bars("label coverage", coverage, "#9ecae1", 1.0)
    caption = "Realized RMSE and MAE" if regression else "Realized ROC-AUC and accuracy"
    figures = [_figure(caption + " (bars: label coverage, right axis)",
                       line_chart(arm.labels, series, bars=bars))]  # fmt: skip
    rates = [
        Series("label rate", arm.values("label", "label_rate"), _BLUE),
        Series("label rate reference", arm.details("label", "label_rate", "reference"), _BLUE, True),
        Series("predicted positive rate", arm.values("prediction", "positive_rate"), _PURPLE),
        Series("positive rate reference", arm.details("prediction", "positive_rate", "reference"),
               _PURPLE, True),
    ]  # fmt: skip
    if not regression and any(v is not None for s in rates for v in s.values):
        figures.append(_figure("Label rate and predicted positive rate",
                               line_chart(arm.labels, rates, percent=True, floor=0.0)))  # fmt: skip
    return f'<div class="grid">{"".join(figures)}</div>'


def _estimated(arm: _Arm) -> str:
    pairs = {m: (arm.values("estimated", m), arm.values("performance", m))
             for m in ("roc_auc", "accuracy")}  # fmt: skip
    if not any(v is not None for est, _ in pairs.values() for v in est):
        return _note("No label-free estimates in these windows (regression, or no scores).")
    figures, head, foot = [], ["<th>Window</th>"], ["<td>Mean absolute error</td>"]
    bands = {m: (arm.details("estimated", m, "lower"), arm.details("estimated", m, "upper"))
             for m in pairs}  # fmt: skip
    for metric, (est, real) in pairs.items():
        lower, upper = bands[metric]
        series = [Series("estimated", est, _PURPLE, lower=lower, upper=upper),
                  Series("realized", real, _BLUE)]  # fmt: skip
        figures.append(_figure(f"{_NAMES[metric]}: estimated (95% interval) vs realized",
                               line_chart(arm.labels, series, width=560)))  # fmt: skip
        name = escape(_NAMES[metric])
        head += [f"<th>{name} estimated</th><th>interval</th><th>realized</th><th>error</th>"]
        mae, n = mean_absolute_error(est, real), sum(e is not None and r is not None
                                                     for e, r in zip(est, real, strict=True))  # fmt: skip
        foot.append(f'<td colspan="3">over {n} windows</td><td class="mae" data-metric="{metric}">'
                    f"{'—' if mae is None else f'{mae:.4f}'}</td>")  # fmt: skip
    body = []
    for i in range(len(arm.windows)):
        cells = []
        for metric, (est, real) in pairs.items():
            lo, hi = bands[metric][0][i], bands[metric][1][i]
            e, r = est[i], real[i]
            error = None if e is None or r is None else e - r
            cells.append(f"<td>{_f3(e)}</td><td>{_f3(lo)} – {_f3(hi)}</td><td>{_f3(r)}</td>"
                         f"<td>{'—' if error is None else f'{error:+.4f}'}</td>")  # fmt: skip
        if any(v[i] is not None for est, real in pairs.values() for v in (est, real)):
            body.append(f"<tr><td>{escape(_full(arm.windows[i].start))}</td>{''.join(cells)}</tr>")
    table = (f'<div class="scroll"><table class="errors"><thead><tr>{"".join(head)}</tr></thead>'
             f"<tbody>{''.join(body)}</tbody><tfoot><tr>{''.join(foot)}</tr></tfoot></table></div>")  # fmt: skip
    return f'<div class="grid">{"".join(figures)}</div>{table}'


def _calibration(arm: _Arm) -> str:
    for i in reversed(range(len(arm.windows))):
        r = arm.index[i].get(("performance", "ece", ""))
        table = (r.details or {}).get("table") if r is not None else None
        if r is not None and isinstance(table, list) and any(_num(b.get("count")) for b in table):
            break
    else:
        return _note("No window has a reliability table yet (labels needed).")
    details, bins, points = r.details or {}, [], []
    for b in table:
        lower, upper, count = (
            _num(b.get("lower")),
            _num(b.get("upper")),
            int(_num(b.get("count")) or 0),
        )
        score, rate = _num(b.get("mean_score")), _num(b.get("label_rate"))
        gap = None if score is None or rate is None else abs(score - rate)
        bins.append(f"<tr><td>{_fmt(lower)}–{_fmt(upper)}</td><td>{count:,}</td>"
                    f"<td>{_fmt(score)}</td><td>{_fmt(rate)}</td><td>{_fmt(gap)}</td></tr>")  # fmt: skip
        if score is not None and rate is not None:
            tip = (f"scores {_fmt(lower)}–{_fmt(upper)}: {count:,} rows, mean score "
                   f"{_fmt(score)}, label rate {_fmt(rate)}")  # fmt: skip
            points.append(Point(score, rate, count, tip))
    caption = (f"Window {_when(arm, i)} · ECE {_fmt(_num(r.value))} · max error "
               f"{_fmt(_num(details.get('max_error')))}")  # fmt: skip
    table_html = ("<table><thead><tr><th>Score bin</th><th>rows</th><th>mean score</th>"
                  f"<th>label rate</th><th>gap</th></tr></thead><tbody>{''.join(bins)}</tbody></table>")  # fmt: skip
    return f'<div class="grid">{_figure(caption, reliability_chart(points))}{table_html}</div>'


def _operations(arm: _Arm) -> str:
    latency = [Series(name, arm.values("operational", metric), color)
               for metric, name, color in _LATENCY]  # fmt: skip
    rates = [Series("error rate", arm.values("operational", "error_rate"), _RED),
             Series("fallback rate", arm.values("operational", "fallback_rate"), "#8c564b")]  # fmt: skip
    rows = [float(w.rows) if w.status != "empty" else None for w in arm.windows]
    top = nice_ticks(0.0, max((r for r in rows if r), default=1.0))[-1]
    bars = Bars("rows", rows, "#c7d3de", top, percent=False)
    return '<div class="grid">' + "".join([
        _figure("Latency per window (ms)", line_chart(arm.labels, latency, floor=0.0)),
        _figure("Error and fallback rate (bars: rows, right axis)",
                line_chart(arm.labels, rates, bars=bars, percent=True, floor=0.0)),
    ]) + "</div>"  # fmt: skip


def _worst(arm: _Arm, metric: str, column: str) -> str:
    found = [(v, i) for i, v in enumerate(arm.values("quality", metric, column)) if v is not None]
    if not found:
        return "<td>—</td>"
    value, i = max(found)
    r = arm.index[i][("quality", metric, column)]
    reference = _num((r.details or {}).get("reference")) if metric == "missing_rate" else None
    mark = (
        ' class="bad"'
        if r.status in ("breach", "error") or (metric == "non_finite_rate" and value > 0)
        else ""
    )
    ref = f' <span class="when">ref {_pct(reference)}</span>' if reference is not None else ""
    when = f' <span class="when">{escape(arm.labels[i])}</span>' if value > 0 else ""
    return f"<td{mark}>{_pct(value)}{ref}{when}</td>"


def _quality(arm: _Arm) -> str:
    quality = [r for rs in arm.stored for r in rs if r.check == "quality"]
    features = list(dict.fromkeys(r.column for r in quality if r.column))
    if not quality:
        why = " (shadow arms are not checked for data quality)" if arm.shadow else ""
        return _note(f"No data-quality results in these windows{why}.")
    head = "".join(f"<th>worst {m.replace('_', ' ')}</th>" for m in _QUALITY)
    rows = []
    for feature in features:
        errors = {f"{(r.details or {}).get('reason', r.status)} ({arm.labels[k]})"
                  for k, rs in enumerate(arm.stored) for r in rs
                  if r.check == "quality" and r.column == feature and r.status == "error"}  # fmt: skip
        issue = (
            f'<td class="bad">{escape("; ".join(sorted(errors)))}</td>' if errors else "<td></td>"
        )
        worst = "".join(_worst(arm, m, feature) for m in _QUALITY)
        rows.append(f"<tr><td><code>{escape(feature)}</code></td>{worst}{issue}</tr>")
    violations = [r.value for r in quality if r.metric == "violation_rate" and r.value is not None]
    absent = sorted({str(f) for r in quality if r.metric == "absent_features"
                     for f in (r.details or {}).get("features", [])})  # fmt: skip
    notes = []
    if violations:
        notes.append(f"Worst share of records with contract violations: {_pct(max(violations))}.")
    if absent:
        notes.append("Features absent from the log: " + ", ".join(absent) + ".")
    return (f'<div class="scroll"><table class="quality"><thead><tr><th>Feature</th>{head}'
            f"<th>issues</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            + "".join(f'<p class="meta">{escape(n)}</p>' for n in notes))  # fmt: skip


def _all_results(arm: _Arm) -> str:
    rows = []
    for w, rs in zip(arm.windows, arm.stored, strict=True):
        for r in rs:
            details = (
                "" if r.details is None else json.dumps(r.details, default=str, sort_keys=True)
            )
            cells = (_full(w.start), w.model_version, r.check, r.metric, r.column,
                     _fmt(_num(r.value)), _fmt(r.threshold), r.status)  # fmt: skip
            rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells)
                        + f'<td class="details">{escape(details)}</td></tr>')  # fmt: skip
    head = "".join(f"<th>{h}</th>" for h in ("Window", "Model", "Check", "Metric", "Column",
                                               "Value", "Threshold", "Status", "Details"))  # fmt: skip
    return (f"<details><summary>All results ({len(rows)})</summary><div class=\"scroll\">"
            f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table></div></details>")  # fmt: skip
