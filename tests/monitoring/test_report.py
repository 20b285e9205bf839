"""The HTML monitoring report, rendered from hand-built windows and results: three
endpoints (a classifier with a live and a shadow arm, an empty window and a window whose
values are all None; a regressor; one with only empty windows) and a feature named like
a script tag. The page must be balanced HTML with well-formed SVG, reference nothing
outside itself, escape every name, draw one heatmap cell per (feature, window) and show
the mean absolute error of the estimates computed by hand."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser

import pytest

from prodml.monitoring._checks import Result
from prodml.monitoring._report import render_report
from prodml.monitoring._store import StoredWindow

DAY0 = datetime(2024, 5, 1, tzinfo=UTC)
NOW = datetime(2024, 5, 9, 6, 30, tzinfo=UTC)
SCRIPT = "<script>alert('x')</script>"
NUMERIC = ("amount", "hour_of_day", SCRIPT)
CATEGORICAL = ("merchant_category", "country")
FEATURES = (*NUMERIC, *CATEGORICAL)
# Live arm of "fraud", one value per window with predictions (day 3: every value None).
LIVE_DAYS = (0, 1, 2, 3, 4, 6, 7)
EST_AUC = (0.84, 0.83, 0.85, None, 0.80, 0.78, 0.76)
REAL_AUC = (0.85, 0.81, 0.85, None, 0.77, None, 0.74)
EST_ACC = (0.91, 0.90, 0.91, None, 0.89, 0.88, 0.87)
REAL_ACC = (0.92, 0.90, 0.89, None, 0.86, None, 0.88)
# |e - r| where both exist: AUC .01 .02 0 .03 .02 → 0.08 / 5; accuracy .01 0 .02 .03 .01 → 0.07 / 5
MAE_AUC, MAE_ACC = "0.0160", "0.0140"


class _Windows:
    """Builds StoredWindow rows with increasing ids."""

    def __init__(self) -> None:
        self.windows: list[StoredWindow] = []
        self.results: dict[int, list[Result]] = {}

    def add(
        self, endpoint: str, day: int, results: list[Result], *, arm: str = "champion",
        version: str = "v1", shadow: bool = False, rows: int = 1000, status: str = "computed",
        label_rows: int = 0,
    ) -> None:  # fmt: skip
        wid = len(self.windows) + 1
        start = DAY0 + timedelta(days=day)
        self.windows.append(StoredWindow(wid, endpoint, arm, version, shadow, start,
                                         start + timedelta(days=1), rows, status, label_rows,
                                         day < 6))  # fmt: skip
        self.results[wid] = results


def _operational(k: int, rows: int) -> list[Result]:
    return [
        Result("operational", "rows", float(rows)),
        Result("operational", "throughput_per_s", rows / 86400),
        Result("operational", "error_rate", 0.002 + 0.004 * (k == 4)),
        Result("operational", "fallback_rate", 0.01 * (k % 3)),
        Result("operational", "latency_p50_ms", 11.0 + k),
        Result("operational", "latency_p95_ms", 28.0 + 3 * k),
        Result("operational", "latency_p99_ms", 55.0 + 9 * k * (k != 4) + 60 * (k == 4)),
    ]


def _inputs(k: int) -> list[Result]:
    """Quality and drift of the live arm's k-th window: 'amount' drifts from k = 4."""
    out = [Result("quality", "violation_rate", 0.001 * k)]
    drifted = 0
    for j, name in enumerate(FEATURES):
        numeric = name in NUMERIC
        out.append(Result("quality", "missing_rate", 0.01 * j + 0.03 * (k == 6 and j == 1), name,
                          details={"reference": 0.01 * j}))  # fmt: skip
        if numeric:
            out.append(Result("quality", "out_of_range_rate", 0.002 * k * (j == 0), name))
        else:
            out.append(Result("quality", "unseen_category_rate", 0.004 * k * (j == 4), name))
        if name == "hour_of_day":  # a p-value test: threshold is the FDR
            p = 0.5 / (1 + k)
            out.append(Result("drift", "ks", 0.02 + 0.01 * k, name, 0.05, "ok" if p >= 0.05 else "drift",
                              {"pvalue": p, "adjusted_pvalue": p, "rows": 1000, "missing": 0}))  # fmt: skip
            drifted += p < 0.05
            continue
        value = (0.03 + 0.045 * max(0, k - 3)) if j == 0 else 0.02 + 0.012 * j + 0.01 * (k % 2)
        metric = "wasserstein" if numeric else "jensen_shannon"
        status = "drift" if value > 0.1 else "ok"
        drifted += status == "drift"
        out.append(Result("drift", metric, value, name, 0.1, status, {"rows": 1000, "missing": 0}))
    share = drifted / len(FEATURES)
    out.append(Result("drift", "share", share, "", 0.5, "drift" if share >= 0.5 else "ok",
                      {"top": [{"column": "amount", "value": 0.2}]}))  # fmt: skip
    return out


def _labels(k: int, est: tuple[float | None, float | None], real: tuple[float | None, float | None],
            coverage: float) -> list[Result]:  # fmt: skip
    out = [Result("prediction", "wasserstein", 0.02 + 0.01 * k, "prediction", 0.1, "ok"),
           Result("prediction", "positive_rate", 0.05 + 0.004 * k, details={"reference": 0.05})]  # fmt: skip
    for metric, value in zip(("roc_auc", "accuracy"), est, strict=True):
        band = (
            None
            if value is None
            else {"value": value, "lower": value - 0.03, "upper": value + 0.025}
        )
        out.append(Result("estimated", metric, value, details=band))
    out.append(
        Result("performance", "label_coverage", coverage, details={"labelled": 1, "rows": 1})
    )
    for metric, value, reference in zip(("roc_auc", "accuracy"), real, (0.86, 0.91), strict=True):
        out.append(Result("performance", metric, value, details={"reference": reference}))
    if real[0] is not None:
        table = [{"lower": b / 10, "upper": (b + 1) / 10, "count": 400 // (b + 1),
                  "mean_score": b / 10 + 0.05, "label_rate": min(1.0, (b / 10 + 0.05) * (0.8 + 0.03 * k))}
                 for b in range(10)]  # fmt: skip
        table[8].update(count=0, mean_score=None, label_rate=None)
        out.append(
            Result(
                "performance", "ece", 0.03 + 0.005 * k, details={"table": table, "max_error": 0.1}
            )
        )
        out.append(Result("label", "label_rate", 0.06, details={"reference": 0.05}))
    return out


def _all_none() -> list[Result]:
    """A window where nothing could be computed."""
    out = [Result("operational", m, None) for m in ("rows", "error_rate", "latency_p50_ms")]
    out += [Result("quality", "missing_rate", None, f, status="error", details={"reason": "boom"})
            for f in FEATURES]  # fmt: skip
    out += [Result("drift", "wasserstein", None, f, 0.1, "error", {"reason": "all null"})
            for f in FEATURES]  # fmt: skip
    out += [Result("drift", "share", None, "", 0.5, "too_few_rows"),
            Result("estimated", "roc_auc", None, details=None),
            Result("performance", "roc_auc", None, details={"reference": None}),
            Result("performance", "ece", None, status="error", details={"reason": "no labels"})]  # fmt: skip
    return out


def sample() -> tuple[list[StoredWindow], dict[int, list[Result]]]:
    """The windows and results every test renders."""
    built = _Windows()
    for k, day in enumerate(LIVE_DAYS):
        version = "v1" if day < 4 else "v2"
        if day == 3:
            built.add("fraud", day, _all_none(), version=version, rows=3, status="too_few_rows")
            continue
        coverage = 0.0 if REAL_AUC[k] is None else 0.95 - 0.1 * k
        results = _operational(k, 1000 + 40 * k) + _inputs(k)
        results += _labels(k, (EST_AUC[k], EST_ACC[k]), (REAL_AUC[k], REAL_ACC[k]), coverage)
        built.add("fraud", day, results, version=version, rows=1000 + 40 * k, label_rows=900)
    built.add("fraud", 5, [], arm="", version="", rows=0, status="empty")
    for k, day in enumerate((4, 6, 7)):  # the shadow arm: no quality or input drift
        real = (0.8 - 0.01 * k, 0.9) if day != 6 else (None, None)
        results = _operational(k, 500) + _labels(
            k, (0.81 - 0.01 * k, 0.9), real, 0.9 if real[0] else 0.0
        )
        built.add("fraud", day, results, arm="challenger", version="v3", shadow=True, rows=500)
    for k in range(3):
        regression = [Result("performance", "label_coverage", 0.7),
                      Result("performance", "rmse", 4.2 + k * 0.3, details={"reference": 4.0}),
                      Result("performance", "mae", 3.1 + k * 0.2, details={"reference": 3.0})]  # fmt: skip
        built.add("eta", k, _operational(k, 200) + regression, arm="main", rows=200)
    for day in (0, 1):
        built.add("payments", day, [], arm="", version="", rows=0, status="empty")
    return built.windows, built.results


class _Tags(HTMLParser):
    """Checks that every non-void element is closed in order."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr", "col"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def page() -> str:
    windows, results = sample()
    return render_report(windows, results, title="Weekly <monitoring>", generated_at=NOW)


def _endpoint(page: str, name: str) -> str:
    start = page.index(f"<h2>Endpoint <code>{name}</code></h2>")
    end = page.find('<section class="endpoint"', start)
    return page[start : end if end > 0 else len(page)]


def _arm(section: str, arm: str) -> str:
    start = section.index(f"Arm <code>{arm}</code>")
    end = section.find('<section class="arm"', start)
    return section[start : end if end > 0 else len(section)]


def test_page_is_balanced_html_with_wellformed_svg(page: str) -> None:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert page.startswith("<!DOCTYPE html>")
    for tag in ("html", "head", "body", "main", "section", "table", "details", "svg"):
        assert parser.counts.get(tag, 0) >= 1, tag
    fragments = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    assert len(fragments) == parser.counts["svg"]
    for fragment in fragments:
        ET.fromstring(fragment)  # raises on malformed XML


def test_page_references_nothing_outside_itself(page: str) -> None:
    parser = _Tags()
    parser.feed(page)
    assert all(url.startswith("#") for url in parser.urls), parser.urls
    assert parser.urls  # the endpoint index links within the page
    lowered = page.lower()
    assert "<script" not in lowered
    assert "http://" not in lowered
    assert "https://" not in lowered
    assert "url(" not in lowered
    assert "@import" not in lowered
    assert re.search(r"\son[a-z]+\s*=", page) is None  # no inline event handlers


def test_every_name_is_escaped(page: str) -> None:
    for name in FEATURES:
        assert escape(name) in page
    assert escape(SCRIPT) in page
    assert SCRIPT not in page
    assert "<title>Weekly &lt;monitoring&gt;</title>" in page


def test_heatmap_has_one_cell_per_feature_and_window(page: str) -> None:
    live = _arm(_endpoint(page, "fraud"), "champion")
    svg = ET.fromstring(re.findall(r'<svg class="heatmap".*?</svg>', live, flags=re.S)[0])
    rects = list(svg.iter("rect"))
    cells = [r for r in rects if r.get("class") == "cell"]
    windows = len(LIVE_DAYS) + 1  # and the endpoint's empty window, as a gap
    assert len(cells) == len(FEATURES) * windows
    assert sum(r.get("class") == "share-cell" for r in rects) == windows
    assert sum(r.get("class") == "prediction-cell" for r in rects) == windows
    tips = [r.findtext("title") or "" for r in cells]
    assert {t.split("\n")[0] for t in tips} == set(FEATURES)
    day3 = [r for r, t in zip(cells, tips, strict=True) if "2024-05-04 00:00 →" in t]
    assert len(day3) == len(FEATURES)
    assert all(r.get("fill") == "#e3e6e9" and "error" in (r.findtext("title") or "") for r in day3)
    drifted = [t for t in tips if t.endswith("· drift")]
    assert drifted
    assert all(t.startswith(("amount", "hour_of_day")) for t in drifted)


def test_estimated_vs_realized_mean_absolute_error(page: str) -> None:
    live = _arm(_endpoint(page, "fraud"), "champion")
    got = dict(re.findall(r'<td class="mae" data-metric="(\w+)">([^<]*)</td>', live))
    assert got == {"roc_auc": MAE_AUC, "accuracy": MAE_ACC}
    errors = [abs(e - r) for e, r in zip(EST_AUC, REAL_AUC, strict=True) if e and r]
    assert math.isclose(sum(errors) / len(errors), float(MAE_AUC))
    assert "over 5 windows" in live


def test_live_arms_first_shadow_marked_and_sections_present(page: str) -> None:
    fraud = _endpoint(page, "fraud")
    assert fraud.index("Arm <code>champion</code>") < fraud.index("Arm <code>challenger</code>")
    assert '<span class="badge shadow">shadow</span>' in _arm(fraud, "challenger")
    assert "not checked for input drift" in _arm(fraud, "challenger")
    live = _arm(fraud, "champion")
    for heading in ("Input drift", "Performance over time", "Estimated vs realized",
                    "Calibration", "Latency and errors", "Data quality", "All results"):  # fmt: skip
        assert heading in live, heading
    assert '<svg class="reliability"' in live
    assert "2024-05-08 00:00" in live
    assert "<code>v1</code>" in live
    assert "<code>v2</code>" in live
    assert "Realized RMSE and MAE" in _endpoint(page, "eta")


def test_empty_endpoint_and_empty_report() -> None:
    windows, results = sample()
    page = render_report(windows, results, title="t", generated_at=NOW)
    assert "All 2 windows were empty" in _endpoint(page, "payments")
    empty = render_report([], {}, title="t", generated_at=NOW)
    assert "No monitoring windows" in empty
    assert "<svg" not in empty


def test_naive_window_times_are_taken_as_utc(page: str) -> None:
    windows, results = sample()
    naive = [replace(w, start=w.start.replace(tzinfo=None), end=w.end.replace(tzinfo=None))
             for w in windows]  # fmt: skip
    assert render_report(naive, results, title="Weekly <monitoring>", generated_at=NOW) == page
