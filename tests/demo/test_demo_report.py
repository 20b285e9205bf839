"""The demo report's closed-loop section, rendered from a hand-made loop record, and the
monitoring page's caller sections (no demo run: that takes minutes)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prodml.core import ConflictError
from prodml.demo._report import LOOP_ANCHOR, loop_section
from prodml.monitoring import ReportSection, Result, StoredWindow, render_report

T = datetime(2014, 1, 8, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>:3'


def _month(month: int, served: float, static: float, oracle: float | None,
           models: list[str]) -> dict[str, Any]:  # fmt: skip
    return {
        "month": f"2013-{month:02d}", "flights": 25_000 + month, "late_rate": 0.2,
        "served_auc": served, "served_ece": 0.021, "static_auc": static, "static_ece": 0.043,
        "oracle_auc": oracle, "served_models": models,
    }  # fmt: skip


def _loop() -> dict[str, Any]:
    months = [
        _month(4, 0.701, 0.702, None, ["flight_delay:1"]),
        _month(5, 0.733, 0.690, 0.741, ["flight_delay:1", "flight_delay:2"]),
        _month(6, 0.712, 0.655, 0.719, ["flight_delay:2", HOSTILE]),
    ]
    return {
        "months": months,
        "summary": {
            "served_auc_jun_aug": 0.712,
            "static_auc_jun_aug": 0.655,
            "oracle_auc_jun_aug": 0.719,
            "served_auc_apr_dec": 0.7153,
            "static_auc_apr_dec": 0.6823,
            "oracle_auc_apr_dec": None,
            "served_ece_apr_dec": 0.021,
            "static_ece_apr_dec": 0.043,
            "served_ece_jun_aug": 0.021,
            "static_ece_jun_aug": 0.043,
        },
        "promotions": [
            {
                "time": "2013-05-08T00:00:00+00:00",
                "new": "flight_delay:2",
                "old": "flight_delay:1",
                "flights": 20_000,
                "new_auc": 0.735,
                "old_auc": 0.691,
                "ok": True,
            },
            {
                "time": "2013-06-09T00:00:00+00:00",
                "new": HOSTILE,
                "old": "flight_delay:2",
                "flights": 21_000,
                "new_auc": 0.690,
                "old_auc": 0.712,
                "ok": False,
            },
        ],
        "events": [
            {"kind": "retrain", "status": "succeeded"},
            {"kind": "rollout", "action": "start"},
            {"kind": "rollout", "action": "promote"},
        ],
    }


def _svg(html: str) -> str:
    found = re.search(r"<svg.*?</svg>", html, re.S)
    assert found is not None, "no chart in the section"
    return found[0]


def test_the_chart_draws_the_three_series_with_their_legend() -> None:
    section = loop_section(_loop())
    assert section.anchor == LOOP_ANCHOR
    svg = _svg(section.html)
    lines = re.findall(r'<polyline points="([^"]*)" fill="none" stroke="([^"]*)"', svg)
    # One line per model, in its colour: three points each, the oracle's two (from May).
    assert [(len(points.split()), color) for points, color in lines] == [
        (3, "#1f77b4"), (3, "#ff7f0e"), (2, "#2ca02c"),
    ]  # fmt: skip
    for name in ("served (", "static (", "oracle ("):
        assert f">{name}" in svg, name  # in the legend
    # Months on x (by name), ROC-AUC on y.
    assert all(f">{m}</text>" in svg for m in ("Apr", "May", "Jun"))
    assert "ROC-AUC" in section.html
    assert "month of departure" in section.html


def test_a_month_without_oracle_is_a_gap_and_a_dash() -> None:
    section = loop_section(_loop())
    svg = _svg(section.html)
    # Oracle points: May and June only (April has none), each with its tooltip.
    oracle_points = re.findall(r'<circle[^>]*fill="#2ca02c"><title>([^<]*)</title>', svg)
    assert [t.split(" · ")[1].split(":")[0] for t in oracle_points] == ["May", "Jun"]
    april = re.search(r"<tr><td>2013-04</td>.*?</tr>", section.html)
    assert april is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", april[0])
    assert cells[7] == "—"  # oracle AUC
    assert cells[3] == "0.701"
    # A month record with the oracle missing altogether, or NaN values, renders too.
    loop = _loop()
    del loop["months"][0]["oracle_auc"]
    loop["months"][1]["served_ece"] = float("nan")
    assert "<svg" in loop_section(loop).html


def test_a_worse_promotion_is_flagged() -> None:
    html = loop_section(_loop()).html
    rows = re.findall(r"<tr><td>2013-0[56]-\d\d</td>.*?</tr>", html)
    assert len(rows) == 2
    assert "badge ok" in rows[0]
    assert "WORSE" not in rows[0]
    assert "WORSE" in rows[1]
    assert "-0.022" in rows[1]


def test_the_summary_means_are_shown() -> None:
    html = loop_section(_loop()).html
    served = re.search(r"<tr><td>served ROC-AUC</td><td>([^<]*)</td><td>([^<]*)</td></tr>", html)
    oracle = re.search(r"<tr><td>oracle ROC-AUC</td><td>([^<]*)</td><td>([^<]*)</td></tr>", html)
    assert served is not None
    assert served.groups() == ("0.712", "0.715")
    assert oracle is not None
    assert oracle.groups() == ("0.719", "—")


def test_every_string_from_the_record_is_escaped() -> None:
    html = loop_section(_loop()).html
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;:3" in html
    # A hostile month name is escaped in the table and on the chart's axis.
    loop = _loop()
    loop["months"][0]["month"] = "<b>April</b>"
    html = loop_section(loop).html
    assert "<b>" not in html
    assert html.count("&lt;b&gt;April&lt;/b&gt;") >= 2


def test_an_empty_loop_renders_notes_not_a_chart() -> None:
    html = loop_section({"months": [], "summary": {}, "promotions": [], "events": []}).html
    assert "<svg" not in html
    assert "The loop scored no month." in html
    assert "No promotion happened in this replay." in html


def _window() -> StoredWindow:
    return StoredWindow(1, "flight_delay", "main", "flight_delay:1", False, T,
                        T + timedelta(days=1), 10, "computed", 0, True)  # fmt: skip


def test_a_section_comes_first_after_the_nav_with_its_link() -> None:
    page = render_report(
        [_window()], {1: [Result("operational", "rows", 10.0)]}, title="Demo",
        generated_at=T, retraining=[], sections=[loop_section(_loop())],
    )  # fmt: skip
    nav = re.search(r"<nav>(.*?)</nav>", page)
    assert nav is not None
    links = re.findall(r'<a href="#([^"]+)">([^<]*)</a>', nav[0])
    assert links == [(LOOP_ANCHOR, "The closed loop"), ("endpoint-1", "flight_delay"),
                     ("retraining", "Retraining")]  # fmt: skip
    ids = [page.index(f'id="{a}"') for a in (LOOP_ANCHOR, "endpoint-1", "retraining")]
    assert page.index("</nav>") < ids[0] < ids[1] < ids[2]
    assert "<h2>The closed loop</h2>" in page


def test_without_sections_the_page_is_unchanged() -> None:
    args = ([_window()], {1: [Result("operational", "rows", 10.0)]})
    plain = render_report(*args, title="Demo", generated_at=T)
    assert plain == render_report(*args, title="Demo", generated_at=T, sections=())
    assert "<nav>" not in plain  # one endpoint, nothing to navigate


def test_a_section_title_is_escaped_and_its_anchor_checked() -> None:
    page = render_report([], {}, title="Demo", generated_at=T,
                         sections=[ReportSection("a", "<i>A</i>", "<p>body</p>"),
                                   ReportSection("b", "B", "")])  # fmt: skip
    assert "<h2>&lt;i&gt;A&lt;/i&gt;</h2><p>body</p>" in page
    assert '<a href="#a">&lt;i&gt;A&lt;/i&gt;</a>' in page
    with pytest.raises(ValueError, match=r"ReportSection\.anchor"):
        ReportSection('x" onclick="y', "X", "")
    with pytest.raises(ConflictError, match="'retraining'"):
        render_report([], {}, title="Demo", generated_at=T, retraining=[],
                      sections=[ReportSection("retraining", "Mine", "")])  # fmt: skip
