"""Inline SVG charts for the monitoring report: a line chart over windows (optional
shaded band per line and bars on a secondary axis), a heatmap and a reliability diagram.

Written here rather than with a plotting library because the report must be one
self-contained HTML file that opens offline: no JavaScript, no fonts or images fetched,
and a few hundred lines of SVG text is all three charts need. Every label passes through
:func:`html.escape`; the output is well-formed XML without a namespace (inline SVG in
HTML needs none). ``None`` and non-finite values are gaps: a line breaks there, a bar or
a point is not drawn.

>>> svg = line_chart(["a", "b", "c"], [Series("auc", [0.8, None, 0.9], "#1f77b4")])
>>> svg.startswith("<svg") and svg.count("<polyline") == 0 and svg.count("<circle") == 2
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "Bars",
    "Cell",
    "HeatRow",
    "Point",
    "Series",
    "heat_color",
    "heatmap",
    "line_chart",
    "nice_ticks",
    "reliability_chart",
    "tick_label",
]

Values = Sequence[float | None]
_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="11"'
_MUTED = "#6b7580"
_GRID = "#e4e8ec"
#: Heat scale stops: 0 = nothing, 0.5 = at the threshold, 1 = twice the threshold or more.
_HEAT = ((0.0, (240, 249, 236)), (0.3, (199, 233, 192)), (0.5, (255, 232, 150)),
         (0.75, (252, 141, 60)), (1.0, (189, 0, 38)))  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One line: a value per window; ``lower``/``upper`` draw a shaded band under it."""

    name: str
    values: Values
    color: str
    dashed: bool = False
    lower: Values | None = None
    upper: Values | None = None


@dataclass(frozen=True)
class Bars:
    """Bars on the secondary (right) axis, which runs from 0 to ``top``."""

    name: str
    values: Values
    color: str
    top: float
    percent: bool = True


@dataclass(frozen=True)
class Cell:
    """A heatmap cell: ``heat`` in [0, 1] picks the colour (None: grey, no value)."""

    heat: float | None
    tooltip: str
    marked: bool = False
    text: str = ""


@dataclass(frozen=True)
class HeatRow:
    """A heatmap row; ``kind`` is the CSS class of its cells (a new kind starts a block)."""

    label: str
    cells: Sequence[Cell]
    kind: str = "cell"


@dataclass(frozen=True)
class Point:
    """A reliability-diagram point: mean score ``x``, label rate ``y``, bin ``count``."""

    x: float
    y: float
    count: int
    tooltip: str


def _ok(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _n(value: float) -> str:
    return f"{value:.1f}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values from at or below ``lo`` to at or above ``hi``.

    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(0.71, 0.93)
    [0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    """
    if not hi > lo:  # one value: a zero rate gets [0, 1], anything else a margin
        lo, hi = (0.0, 1.0) if lo == 0 else (lo - abs(lo) * 0.05, hi + abs(hi) * 0.05)
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    digits = max(0, 2 - math.floor(math.log10(step)))
    first = math.floor(lo / step + 1e-9)
    ticks = [round((first + k) * step, digits) for k in range(count + 3)]
    return [t for i, t in enumerate(ticks) if i == 0 or ticks[i - 1] < hi - step * 1e-9]


def tick_label(value: float, step: float, *, percent: bool = False) -> str:
    """A tick value with just the decimals its ``step`` needs.

    >>> tick_label(0.25, 0.05), tick_label(0.125, 0.025, percent=True), tick_label(1500, 500)
    ('0.25', '12.5%', '1,500')
    """
    scale = 100 if percent else 1
    digits = next(d for d in range(8) if abs(round(step * scale, d) - step * scale) < 1e-9)
    return f"{value * scale:,.{digits}f}{'%' if percent else ''}"


def _x_labels(labels: Sequence[str], x: Callable[[int], float], y: float, room: float) -> str:
    """Window labels under the plot, thinned to what fits."""
    slot = 6.2 * max((len(label) for label in labels), default=1) + 14
    every = max(1, math.ceil(len(labels) / max(1.0, room / slot)))
    return "".join(
        f'<text x="{_n(x(i))}" y="{_n(y)}" text-anchor="middle" fill="{_MUTED}">'
        f"{escape(label)}</text>"
        for i, label in enumerate(labels)
        if i % every == 0
    )


def _runs(values: Sequence[bool]) -> list[range]:
    """Index ranges where ``values`` holds, in order."""
    out, start = [], None
    for i, flag in enumerate([*values, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append(range(start, i))
            start = None
    return out


def _legend(items: Sequence[tuple[str, str, str]], left: float, right: float) -> tuple[str, int]:
    """Legend entries (name, colour, kind: line|dashed|band|bar) along the top, wrapped
    to fit before ``right``; returns the SVG and the number of lines used."""
    parts, x, y = [], left, 11.0
    for name, color, kind in items:
        size = 34 + 6.2 * len(name)
        if x > left and x + size - 14 > right:
            x, y = left, y + 15
        if kind in ("band", "bar"):
            opacity = "0.25" if kind == "band" else "0.55"
            parts.append(f'<rect x="{_n(x)}" y="{_n(y - 5)}" width="16" height="9" fill="{color}" '
                         f'fill-opacity="{opacity}"/>')  # fmt: skip
        else:
            dash = ' stroke-dasharray="5 3"' if kind == "dashed" else ""
            parts.append(f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x + 16)}" y2="{_n(y)}" '
                         f'stroke="{color}" stroke-width="2"{dash}/>')  # fmt: skip
        parts.append(f'<text x="{_n(x + 20)}" y="{_n(y + 3)}">{escape(name)}</text>')
        x += size
    return "".join(parts), int((y - 11) / 15) + 1


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    bars: Bars | None = None,
    percent: bool = False,
    floor: float | None = None,
    width: int = 580,
    height: int = 240,
) -> str:
    """Lines over windows (x = one slot per label), with bands, points and tooltips;
    the y axis fits the values (and ``floor`` when given, e.g. 0 for rates)."""
    left, right, bottom = 54, (48 if bars else 16), 24
    items = [] if bars is None else [(bars.name, bars.color, "bar")]
    items += [(f"{s.name} interval", s.color, "band") for s in series
              if s.lower is not None and s.upper is not None]  # fmt: skip
    items += [(s.name, s.color, "dashed" if s.dashed else "line") for s in series]
    legend, lines = _legend(items, left, width - right)
    top = 14 + 15 * lines
    height += 15 * (lines - 1)
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(labels))

    def x(i: int) -> float:
        return left + (i + 0.5) * step

    data = [v for s in series for seq in (s.values, s.lower or (), s.upper or ())
            for v in seq if v is not None and math.isfinite(v)]  # fmt: skip
    data += [] if floor is None or not data else [floor]
    if data:  # a little air above and below the values (not below a floor)
        pad = (max(data) - min(data)) * 0.04
        ticks = nice_ticks(min(data) - (pad if floor is None else 0.0), max(data) + pad)
    else:
        ticks = nice_ticks(0.0, 1.0)
    lo, hi = ticks[0], ticks[-1]

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    tick_step = ticks[1] - ticks[0]
    out = [f'<svg class="chart" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" {_FONT}>']  # fmt: skip
    for t in ticks:
        out.append(f'<line x1="{left}" y1="{_n(y(t))}" x2="{left + plot_w}" y2="{_n(y(t))}" '
                   f'stroke="{_GRID}"/><text x="{left - 6}" y="{_n(y(t) + 4)}" '
                   f'text-anchor="end" fill="{_MUTED}">{tick_label(t, tick_step, percent=percent)}'
                   "</text>")  # fmt: skip
    if bars is not None:
        out.append(_bars(bars, x, step, top, plot_h, left + plot_w))
    for s in series:
        if s.lower is not None and s.upper is not None:
            out.append(_band(s, x, y, step))
    for s in series:
        out.append(_line(s, labels, x, y, percent))
    if not data:
        out.append(f'<text x="{_n(left + plot_w / 2)}" y="{_n(top + plot_h / 2)}" '
                   f'text-anchor="middle" fill="{_MUTED}">no values</text>')  # fmt: skip
    out.append(_x_labels(labels, x, height - 6, plot_w))
    out.append(legend)
    out.append("</svg>")
    return "".join(out)


def _bars(
    bars: Bars, x: Callable[[int], float], step: float, top: float, plot_h: float, axis: float
) -> str:
    out = []
    for fraction in (0.0, 0.5, 1.0):
        value = bars.top * fraction
        label = tick_label(value, bars.top / 2, percent=bars.percent) if bars.top else "0"
        out.append(f'<text x="{_n(axis + 5)}" y="{_n(top + plot_h * (1 - fraction) + 4)}" '
                   f'fill="{_MUTED}">{label}</text>')  # fmt: skip
    for i, v in enumerate(bars.values):
        if v is None or not math.isfinite(v) or bars.top <= 0:
            continue
        h = plot_h * min(max(v / bars.top, 0.0), 1.0)
        text = f"{v:.1%}" if bars.percent else f"{v:,.0f}"
        out.append(f'<rect x="{_n(x(i) - step * 0.3)}" y="{_n(top + plot_h - h)}" '
                   f'width="{_n(step * 0.6)}" height="{_n(h)}" fill="{bars.color}" '
                   f'fill-opacity="0.55"><title>{escape(bars.name)}: {text}</title></rect>')  # fmt: skip
    return "".join(out)


def _band(s: Series, x: Callable[[int], float], y: Callable[[float], float], step: float) -> str:
    lower, upper = s.lower or (), s.upper or ()
    out = []
    for run in _runs([_ok(a) and _ok(b) for a, b in zip(lower, upper, strict=True)]):
        lo = [float(lower[i] or 0.0) for i in run]
        hi = [float(upper[i] or 0.0) for i in run]
        if len(run) == 1:  # one window: a short interval bar
            i = run[0]
            out.append(f'<rect x="{_n(x(i) - step * 0.12)}" y="{_n(y(hi[0]))}" '
                       f'width="{_n(step * 0.24)}" height="{_n(y(lo[0]) - y(hi[0]))}" '
                       f'fill="{s.color}" fill-opacity="0.25"/>')  # fmt: skip
            continue
        edge = [(x(i), y(v)) for i, v in zip(run, hi, strict=True)]
        edge += [(x(i), y(v)) for i, v in zip(reversed(run), reversed(lo), strict=True)]
        points = " ".join(f"{_n(a)},{_n(b)}" for a, b in edge)
        out.append(f'<polygon points="{points}" fill="{s.color}" fill-opacity="0.2"/>')
    return "".join(out)


def _line(
    s: Series,
    labels: Sequence[str],
    x: Callable[[int], float],
    y: Callable[[float], float],
    percent: bool,
) -> str:
    dash = ' stroke-dasharray="5 3"' if s.dashed else ""
    out = []
    for run in _runs([_ok(v) for v in s.values]):
        if len(run) == 1 and s.dashed:  # a lone reference value: a short level mark
            i, level = run[0], y(float(s.values[run[0]] or 0.0))
            out.append(f'<line x1="{_n(x(i) - 12)}" y1="{_n(level)}" x2="{_n(x(i) + 12)}" '
                       f'y2="{_n(level)}" stroke="{s.color}" stroke-width="2"{dash}/>')  # fmt: skip
        elif len(run) > 1:
            points = " ".join(f"{_n(x(i))},{_n(y(float(s.values[i] or 0.0)))}" for i in run)
            out.append(f'<polyline points="{points}" fill="none" stroke="{s.color}" '
                       f'stroke-width="2"{dash}/>')  # fmt: skip
    if s.dashed:
        return "".join(out)
    for i, v in enumerate(s.values):
        if _ok(v):
            value = float(v or 0.0)
            text = f"{value:.2%}" if percent else f"{value:,.4g}"
            out.append(f'<circle cx="{_n(x(i))}" cy="{_n(y(value))}" r="3" fill="{s.color}">'
                       f"<title>{escape(s.name)} · {escape(labels[i])}: {text}</title></circle>")  # fmt: skip
    return "".join(out)


def heat_color(heat: float) -> str:
    """The heat scale's colour at ``heat`` (clipped to [0, 1]).

    >>> heat_color(0.0), heat_color(1.5)
    ('#f0f9ec', '#bd0026')
    """
    heat = min(max(heat, 0.0), 1.0)
    for (a, ca), (b, cb) in itertools.pairwise(_HEAT):
        if heat <= b:
            t = (heat - a) / (b - a)
            return "#" + "".join(
                f"{round(p + (q - p) * t):02x}" for p, q in zip(ca, cb, strict=True)
            )
    return "#bd0026"


def heatmap(
    rows: Sequence[HeatRow], columns: Sequence[str], *, scale: Sequence[str], width: int = 1180
) -> str:
    """Rows × columns of coloured cells; ``scale`` names the heat 0, 0.5 and 1 points."""
    longest = max((len(r.label) for r in rows), default=4)
    label_w = min(230.0, 16 + 6.4 * min(longest, 34))
    cell_w = min(72.0, max(12.0, (width - label_w - 12) / max(1, len(columns))))
    cell_h, gap, top = 22.0, 8.0, 6.0
    ys, y = [], top
    for i, row in enumerate(rows):
        y += gap if i and row.kind != rows[i - 1].kind else 0.0
        ys.append(y)
        y += cell_h
    total_w = int(max(label_w + cell_w * len(columns) + 12, label_w + 650))
    total_h = int(y + 70)
    out = [f'<svg class="heatmap" width="{total_w}" '
           f'height="{total_h}" viewBox="0 0 {total_w} {total_h}" role="img" {_FONT}>']  # fmt: skip
    for row, row_y in zip(rows, ys, strict=True):
        short = row.label if len(row.label) <= 34 else row.label[:33] + "…"
        out.append(f'<text x="{_n(label_w - 8)}" y="{_n(row_y + cell_h / 2 + 4)}" '
                   f'text-anchor="end"><title>{escape(row.label)}</title>{escape(short)}</text>')  # fmt: skip
        for j, cell in enumerate(row.cells):
            out.append(_cell(cell, row.kind, label_w + j * cell_w, row_y, cell_w, cell_h))
    out.append(
        _x_labels(columns, lambda j: label_w + (j + 0.5) * cell_w, y + 16, cell_w * len(columns))
    )
    out.append(_heat_legend(scale, label_w, y + 32))
    out.append("</svg>")
    return "".join(out)


def _cell(cell: Cell, kind: str, x: float, y: float, w: float, h: float) -> str:
    fill = "#e3e6e9" if cell.heat is None else heat_color(cell.heat)
    out = [f'<rect class="{escape(kind)}" x="{_n(x + 1)}" y="{_n(y + 1)}" width="{_n(w - 2)}" '
           f'height="{_n(h - 2)}" fill="{fill}"><title>{escape(cell.tooltip)}</title></rect>']  # fmt: skip
    if cell.marked:
        out.append(f'<path d="M{_n(x + w - 9)},{_n(y + 1)} h8 v8 z" fill="#1d2329" '
                   f'pointer-events="none"/>')  # fmt: skip
    if cell.text and w >= 40:
        ink = "#ffffff" if (cell.heat or 0.0) > 0.7 else "#1d2329"
        out.append(f'<text x="{_n(x + w / 2)}" y="{_n(y + h / 2 + 4)}" text-anchor="middle" '
                   f'font-size="10" fill="{ink}" pointer-events="none">{escape(cell.text)}</text>')  # fmt: skip
    return "".join(out)


def _heat_legend(scale: Sequence[str], left: float, y: float) -> str:
    out = []
    for k in range(20):
        out.append(f'<rect x="{_n(left + k * 9)}" y="{_n(y)}" width="9" height="10" '
                   f'fill="{heat_color(k / 19)}"/>')  # fmt: skip
    for k, label in enumerate(scale[:3]):
        out.append(f'<text x="{_n(left + k * 90)}" y="{_n(y + 24)}" text-anchor="middle" '
                   f'fill="{_MUTED}">{escape(label)}</text>')  # fmt: skip
    x = left + 230
    out.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="14" height="10" fill="#f0f9ec" '
               f'stroke="#bbb"/><path d="M{_n(x + 7)},{_n(y)} h7 v7 z" fill="#1d2329"/>'
               f'<text x="{_n(x + 20)}" y="{_n(y + 9)}">flagged as drift</text>'
               f'<rect x="{_n(x + 130)}" y="{_n(y)}" width="14" height="10" fill="#e3e6e9"/>'
               f'<text x="{_n(x + 150)}" y="{_n(y + 9)}">no value (empty, error, too few rows)'
               "</text>")  # fmt: skip
    return "".join(out)


def reliability_chart(points: Sequence[Point], *, width: int = 380, height: int = 320) -> str:
    """Label rate against mean score per bin, with the diagonal of perfect calibration;
    a point's area follows its bin's count."""
    left, top, size = 50, 14, min(width - 64, height - 54)

    def px(v: float) -> float:
        return left + size * v

    def py(v: float) -> float:
        return top + size * (1 - v)

    out = [f'<svg class="reliability" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" {_FONT}>']  # fmt: skip
    for t in nice_ticks(0.0, 1.0):
        out.append(f'<line x1="{_n(px(0))}" y1="{_n(py(t))}" x2="{_n(px(1))}" y2="{_n(py(t))}" '
                   f'stroke="{_GRID}"/><line x1="{_n(px(t))}" y1="{_n(py(0))}" x2="{_n(px(t))}" '
                   f'y2="{_n(py(1))}" stroke="{_GRID}"/><text x="{left - 6}" y="{_n(py(t) + 4)}" '
                   f'text-anchor="end" fill="{_MUTED}">{t:.1f}</text><text x="{_n(px(t))}" '
                   f'y="{_n(py(0) + 15)}" text-anchor="middle" fill="{_MUTED}">{t:.1f}</text>')  # fmt: skip
    out.append(f'<line x1="{_n(px(0))}" y1="{_n(py(0))}" x2="{_n(px(1))}" y2="{_n(py(1))}" '
               f'stroke="#888" stroke-dasharray="5 3"/>')  # fmt: skip
    shown = [p for p in points if _ok(p.x) and _ok(p.y)]
    if len(shown) > 1:
        path = " ".join(f"{_n(px(p.x))},{_n(py(p.y))}" for p in shown)
        out.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    most = max((p.count for p in shown), default=1) or 1
    for p in shown:
        r = 2.5 + 5.5 * math.sqrt(max(p.count, 0) / most)
        out.append(f'<circle cx="{_n(px(p.x))}" cy="{_n(py(p.y))}" r="{r:.1f}" fill="#1f77b4" '
                   f'fill-opacity="0.75"><title>{escape(p.tooltip)}</title></circle>')  # fmt: skip
    out.append(f'<text x="{_n(px(0.5))}" y="{_n(py(0) + 32)}" text-anchor="middle">mean score</text>'
               f'<text transform="translate(14 {_n(py(0.5))}) rotate(-90)" text-anchor="middle">'
               "label rate</text></svg>")  # fmt: skip
    return "".join(out)
