"""The leakage check: single-feature ROC-AUC / R² on the training and test splits, its
warnings in the gate, ``fail_on_leakage``, and the point-in-time trap end to end."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from sklearn.metrics import r2_score, roc_auc_score
from typer.testing import CliRunner

from featurekit import FEATURES_PY, T0
from prodml import Project
from prodml.cli import app
from prodml.core import GateConfig
from prodml.features import ViewCoverage
from prodml.training import (
    EXACT_TIME_MIN_ROWS,
    EvaluationReport,
    GateResult,
    LeakageReport,
    check_leakage,
    judge,
)
from trainkit import CONFIG, labelled_rows, make_training_project

DEFAULT = GateConfig()


def _frames(n: int, seed: int) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng, rng.random(n) < 0.3


def test_numeric_figures_match_sklearn_and_a_leak_is_flagged() -> None:
    rng, y = _frames(4000, 1)
    y_train, y_test = y[:3000], y[3000:]
    honest = rng.normal(size=4000) + 0.8 * y  # informative, the same in both splits
    leak = y + rng.normal(scale=0.05, size=4000)  # the label with a little noise
    reverse = -honest  # direction does not matter: max(auc, 1 - auc)
    honest[::17] = np.nan  # missing values are left out of a numeric feature's figures
    X = pd.DataFrame({"honest": honest, "leak": leak, "reverse": reverse})
    report = check_leakage(X[:3000], y_train, X[3000:], y_test, task="classification")
    assert report.metric == "roc_auc"
    h = report.features["honest"]
    keep = ~np.isnan(honest)
    assert h.kind == "numeric"
    assert h.train == pytest.approx(roc_auc_score(y_train[keep[:3000]], honest[:3000][keep[:3000]]))
    assert h.test == pytest.approx(roc_auc_score(y_test[keep[3000:]], honest[3000:][keep[3000:]]))
    r = report.features["reverse"]
    assert r.train == pytest.approx(1 - roc_auc_score(y_train, reverse[:3000]))
    assert r.test == pytest.approx(1 - roc_auc_score(y_test, reverse[3000:]))
    assert report.suspects == ["leak"]
    assert report.features["leak"].train >= DEFAULT.leakage_max_auc
    (warning,) = report.warnings
    assert "'leak'" in warning
    assert "inclusive=False" in warning


def test_a_feature_far_better_in_training_than_on_the_test_split_is_flagged() -> None:
    rng, y = _frames(4000, 2)
    drifted = np.where(np.arange(4000) < 3000, y + rng.normal(scale=1.2, size=4000), 0.0)
    drifted[3000:] = rng.normal(size=1000)  # carries nothing on the test split
    X = pd.DataFrame({"drifted": drifted})
    report = check_leakage(X[:3000], y[:3000], X[3000:], y[3000:], task="classification")
    figures = report.features["drifted"]
    assert figures.train < DEFAULT.leakage_max_auc
    assert figures.train - figures.test >= DEFAULT.leakage_max_gap
    assert report.suspects == ["drifted"]
    assert "test split" in report.warnings[0]


def test_categorical_target_encoding_is_honest() -> None:
    rng = np.random.default_rng(3)
    carrier = rng.choice(["AA", "B6", "UA", "DL"], 4000)
    rate = pd.Series({"AA": 0.1, "B6": 0.2, "UA": 0.4, "DL": 0.6})
    y = rng.random(4000) < rate[carrier].to_numpy()
    status = np.where(y, "landed_late", "landed_on_time").astype(object)  # the label itself
    status[rng.random(4000) < 0.02] = None
    ident = np.array([f"id{i}" for i in range(4000)], dtype=object)  # one row per value
    X = pd.DataFrame({"status": status, "ident": ident, "carrier": carrier})
    report = check_leakage(X[:3000], y[:3000], X[3000:], y[3000:], task="classification")
    assert {f.kind for f in report.features.values()} == {"categorical"}
    # an id is not a leak: out-of-fold encoding gives it nothing to memorise
    assert abs(report.features["ident"].train - 0.5) < DEFAULT.leakage_max_gap
    assert report.suspects == ["status"]
    # the test figure is the AUC of the training split's per-category rates
    train = pd.DataFrame({"c": X["carrier"][:3000], "y": y[:3000]})
    encoded = X["carrier"][3000:].map(train.groupby("c")["y"].mean()).to_numpy()
    assert report.features["carrier"].test == pytest.approx(roc_auc_score(y[3000:], encoded))


def test_regression_uses_single_feature_r2() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=3000)
    x = 2.0 * y + rng.normal(size=3000)
    leak = y + rng.normal(scale=0.01, size=3000)
    X = pd.DataFrame({"x": x, "leak": leak})
    report = check_leakage(X[:2000], y[:2000], X[2000:], y[2000:], task="regression")
    assert report.metric == "r2"
    slope, intercept = np.polyfit(x[:2000], y[:2000], 1)
    assert report.features["x"].train == pytest.approx(
        r2_score(y[:2000], intercept + slope * x[:2000])
    )
    assert report.features["x"].test == pytest.approx(
        r2_score(y[2000:], intercept + slope * x[2000:])
    )
    assert report.suspects == ["leak"]


def test_undefined_figures_are_nan_and_never_suspect() -> None:
    y = np.array([True, False] * 50)
    X = pd.DataFrame({"empty": [np.nan] * 100, "constant": [1.0] * 100})
    report = check_leakage(X[:60], y[:60], X[60:], np.ones(40, bool), task="classification")
    assert math.isnan(report.features["empty"].train)
    assert math.isnan(report.features["constant"].test)  # one class on the test split
    assert report.suspects == []


def test_times_and_durations_are_numeric() -> None:
    rng, y = _frames(1000, 7)
    seconds = rng.integers(0, 10**6, 1000) + 10**5 * y
    when = pd.Series(pd.to_datetime(seconds, unit="s", utc=True))
    X = pd.DataFrame({"when": when, "age": pd.to_timedelta(seconds, unit="s")})
    X.loc[::10, "when"] = pd.NaT
    report = check_leakage(X[:700], y[:700], X[700:], y[700:], task="classification")
    keep = X["when"][:700].notna().to_numpy()
    assert report.features["when"].kind == "numeric"
    assert report.features["when"].train == pytest.approx(
        roc_auc_score(y[:700][keep], seconds[:700][keep])
    )
    assert report.features["age"].train == pytest.approx(roc_auc_score(y[:700], seconds[:700]))


def test_report_round_trips_and_large_splits_are_sampled() -> None:
    rng, y = _frames(30_000, 5)
    X = pd.DataFrame({"x": y + rng.normal(size=30_000), "c": rng.choice(list("abc"), 30_000)})
    first = check_leakage(
        X[:20_000], y[:20_000], X[20_000:], y[20_000:], task="classification", max_rows=5000
    )
    again = check_leakage(
        X[:20_000], y[:20_000], X[20_000:], y[20_000:], task="classification", max_rows=5000
    )
    assert first == again
    assert first.features["x"].rows_train == 5000
    assert LeakageReport.from_dict(json.loads(json.dumps(first.to_dict()))) == first


def _report() -> EvaluationReport:
    return EvaluationReport("classification", 100, {"roc_auc": 0.9}, {}, None, {})


def test_gate_warns_by_default_and_fails_with_fail_on_leakage() -> None:
    _rng, y = _frames(2000, 6)
    X = pd.DataFrame({"leak": y.astype(float)})
    leakage = check_leakage(X[:1500], y[:1500], X[1500:], y[1500:], task="classification")
    warned = judge(_report(), config=GateConfig(robustness=False), leakage=leakage)
    assert warned.status == "BLESSED"
    assert warned.warnings == tuple(leakage.warnings)
    assert "leakage" not in {c.name for c in warned.checks}
    assert GateResult.from_dict(warned.to_dict()) == warned
    failed = judge(
        _report(), config=GateConfig(robustness=False, fail_on_leakage=True), leakage=leakage
    )
    assert failed.status == "NOT_BLESSED"
    assert any("'leak'" in reason and "fail_on_leakage" in reason for reason in failed.reasons)
    clean = judge(
        _report(),
        config=GateConfig(robustness=False, fail_on_leakage=True),
        leakage=check_leakage(X[:0], y[:0], X[:0], y[:0], task="classification"),
    )
    assert clean.status == "BLESSED"


# --- the point-in-time trap, end to end ---------------------------------------------

TRAP_FEATURES_PY = (
    FEATURES_PY
    + """
user = Entity("user", join_keys=["user_id"])
user_rates = FeatureView("user_rates", entities=[user],
                         source=ParquetSource("data/user_rates.parquet"), event_time="event_time",
                         features=[Field("late_rate", "float64")], inclusive=INCLUSIVE)
flight_delay = FeatureService("flight_delay", features=[weather, planes[["year", "seats"]],
                                                        dep_hour, warm, user_rates])
"""
)
END = T0 + timedelta(days=10)
runner = CliRunner()


def _trap_project(root: Path, *, inclusive: bool, config: str = CONFIG) -> Project:
    """Flights of users with about one flight each, and a per-user running late rate
    stamped at each flight's own time that *includes* that flight's label."""
    project = make_training_project(root, config=config)
    rows = labelled_rows()
    users = np.random.default_rng(8).integers(0, rows.num_rows, rows.num_rows)
    late = pd.Series(rows["late"].to_numpy(zero_copy_only=False)).groupby(users)
    rate = (late.cumsum() / (late.cumcount() + 1)).to_numpy(dtype=np.float64)
    rates = pa.table({"user_id": users, "event_time": rows["sched_dep"], "late_rate": rate})
    pq.write_table(rows.append_column("user_id", pa.array(users)), root / "data" / "rows.parquet")
    pq.write_table(rates, root / "data" / "user_rates.parquet")
    (root / "features.py").write_text(TRAP_FEATURES_PY.replace("INCLUSIVE", str(inclusive)))
    project.features.reload()
    project.features.apply()
    return project


def _cli(*args: str) -> Any:
    result = runner.invoke(app, list(args), terminal_width=200)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def test_point_in_time_trap_is_warned_and_inclusive_false_removes_it(tmp_path: Path) -> None:
    figures: dict[bool, float] = {}
    for inclusive in (True, False):
        root = tmp_path / f"inclusive_{inclusive}"
        _trap_project(root, inclusive=inclusive).close()
        trained = _cli(
            "train", "--start", T0.isoformat(), "--end", END.isoformat(), "-p", str(root)
        )
        shown = _cli("models", "show", "flight_delay:1", "-p", str(root))
        full = json.loads(
            _cli("models", "show", "flight_delay:1", "--full", "--json", "-p", str(root))
        )
        leakage = full["evaluation"]["leakage"]
        late_rate = leakage["features"]["late_rate"]
        figures[inclusive] = late_rate["train"]
        assert full["gate_status"] == "BLESSED"  # a warning, not a failure, by default
        if inclusive:
            assert late_rate["train"] >= DEFAULT.leakage_max_auc
            assert leakage["suspects"] == ["late_rate"]
            for output in (trained, shown):
                assert "late_rate" in output
                assert "leakage" in output
            assert full["gate"]["warnings"]
            assert "late_rate" in full["gate"]["warnings"][0]
        else:
            assert late_rate["train"] < DEFAULT.leakage_max_auc
            assert leakage["suspects"] == []
            assert "leakage" not in trained
            assert "leakage" not in shown
            assert full["gate"]["warnings"] == []
    assert figures[False] < figures[True] - DEFAULT.leakage_max_gap


def test_fail_on_leakage_blocks_the_leaky_model(tmp_path: Path) -> None:
    config = CONFIG.replace("robustness = true", "robustness = true\nfail_on_leakage = true")
    project = _trap_project(tmp_path / "p", inclusive=True, config=config)
    try:
        result = project.training.train(T0, END)
    finally:
        project.close()
    assert result.gate.status == "NOT_BLESSED"
    (check,) = [c for c in result.gate.checks if c.name == "leakage"]
    assert not check.passed
    assert "late_rate" in check.detail
    assert result.to_dict()["leakage"]["suspects"] == ["late_rate"]


# --- the trap at its source: rows stamped exactly at the entity row's time -----------

MILD_FEATURES_PY = TRAP_FEATURES_PY.replace(
    'event_time="time_hour", created_time="created",', 'event_time="time_hour",'
)


def _mild_trap_project(root: Path, *, inclusive: bool, config: str = CONFIG) -> Project:
    """Users who fly ten times each (in a row), and their running late rate over their
    flights *including* the current one, stamped at its own time: a mild leak, the same
    in both splits. Weather is hourly without a created time, so a flight that leaves on
    the hour reads the weather row stamped at that very time (a tie by chance)."""
    project = make_training_project(root, config=config)
    rows = labelled_rows()
    users = np.arange(rows.num_rows) // 10
    late = pd.Series(rows["late"].to_numpy(zero_copy_only=False)).groupby(users)
    rate = (late.cumsum() / (late.cumcount() + 1)).to_numpy(dtype=np.float64)
    rates = pa.table({"user_id": users, "event_time": rows["sched_dep"], "late_rate": rate})
    pq.write_table(rows.append_column("user_id", pa.array(users)), root / "data" / "rows.parquet")
    pq.write_table(rates, root / "data" / "user_rates.parquet")
    (root / "features.py").write_text(MILD_FEATURES_PY.replace("INCLUSIVE", str(inclusive)))
    project.features.reload()
    project.features.apply()
    return project


def test_a_mild_leak_slips_past_the_single_feature_check_but_not_the_tie_report(
    tmp_path: Path,
) -> None:
    for inclusive in (True, False):
        root = tmp_path / f"inclusive_{inclusive}"
        _mild_trap_project(root, inclusive=inclusive).close()
        trained = _cli(
            "train", "--start", T0.isoformat(), "--end", END.isoformat(), "-p", str(root)
        )
        full = json.loads(
            _cli("models", "show", "flight_delay:1", "--full", "--json", "-p", str(root))
        )
        leakage = full["evaluation"]["leakage"]
        late_rate = leakage["features"]["late_rate"]
        # the single-feature check alone does not fire: a mild leak, in both splits
        assert late_rate["train"] < DEFAULT.leakage_max_auc
        assert late_rate["train"] - late_rate["test"] < DEFAULT.leakage_max_gap
        assert leakage["suspects"] == []
        views = leakage["views"]
        weather = views["weather"]  # hourly rows: a flight on the hour ties by chance
        assert 0 < weather["exact_time"] < weather["picked"]
        assert weather["exact_time_share"] < 0.1
        assert not weather["suspect"]
        assert full["gate_status"] == "BLESSED"  # a warning, not a failure, by default
        user_rates = views["user_rates"]
        if inclusive:
            assert late_rate["train"] > 0.7  # it still leaks: the honest rate scores ~0.5
            assert user_rates["picked"] > 0
            assert user_rates["exact_time"] == user_rates["picked"]
            assert user_rates["exact_time_share"] == 1.0
            assert user_rates["suspect"]
            assert leakage["suspect_views"] == ["user_rates"]
            (warning,) = full["gate"]["warnings"]
            assert "feature view 'user_rates'" in warning
            assert "100.0%" in warning
            assert "inclusive=False" in warning
            assert "leakage_max_exact_time_share" in warning
            flat = " ".join(trained.split())
            assert "warning: leakage: feature view 'user_rates'" in flat
            assert "inclusive=False" in flat
        else:
            assert user_rates["exact_time"] == 0
            assert not user_rates["suspect"]
            assert leakage["suspect_views"] == []
            assert full["gate"]["warnings"] == []
            assert "leakage" not in trained


def test_fail_on_leakage_blocks_a_view_of_exact_time_ties(tmp_path: Path) -> None:
    config = CONFIG.replace("robustness = true", "robustness = true\nfail_on_leakage = true")
    project = _mild_trap_project(tmp_path / "p", inclusive=True, config=config)
    try:
        result = project.training.train(T0, END)
    finally:
        project.close()
    assert result.gate.status == "NOT_BLESSED"
    (check,) = [c for c in result.gate.checks if c.name == "leakage"]
    assert not check.passed
    assert "'user_rates'" in check.detail
    assert result.to_dict()["leakage"]["suspect_views"] == ["user_rates"]


def test_the_exact_time_share_threshold_is_configurable(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "robustness = true", "robustness = true\nleakage_max_exact_time_share = 1.0"
    )
    project = _mild_trap_project(tmp_path / "p", inclusive=True, config=config)
    try:
        result = project.training.train(T0, END, register=False)
    finally:
        project.close()
    assert result.leakage is not None
    assert result.leakage.max_exact_time_share == 1.0
    assert result.leakage.suspect_views == ["user_rates"]  # a share of 1.0 reaches 1.0
    config = CONFIG.replace("robustness = true", "robustness = true\nleakage_check = false")
    project = _mild_trap_project(tmp_path / "q", inclusive=True, config=config)
    try:
        result = project.training.train(T0, END, register=False)
    finally:
        project.close()
    assert result.leakage is None
    assert result.gate.warnings == ()


def _coverage(picked: int, exact_time: int, rows: int = 1000) -> ViewCoverage:
    return ViewCoverage(rows=rows, matched=picked, picked=picked, exact_time=exact_time)


def test_view_ties_are_judged_by_share_and_count() -> None:
    _rng, y = _frames(200, 9)
    X = pd.DataFrame({"x": np.arange(200.0)})
    limit = DEFAULT.leakage_max_exact_time_share
    views = {
        "events": _coverage(400, 300),  # 75 %: suspect
        "hourly": _coverage(900, 15),  # ties by chance
        "tiny": _coverage(10, 10),  # every row ties, but too few rows to judge
        "edge": _coverage(400, round(400 * limit)),  # exactly the threshold: suspect
        "none": _coverage(0, 0),
    }
    report = check_leakage(X[:150], y[:150], X[150:], y[150:], task="classification", views=views)
    assert report.suspect_views == ["events", "edge"]
    assert report.views["hourly"].exact_time_share == 15 / 900
    assert report.views["none"].exact_time_share == 0.0
    assert not report.views["tiny"].suspect
    assert report.views["tiny"].exact_time < EXACT_TIME_MIN_ROWS
    texts = [w for w in report.warnings if "feature view" in w]
    assert len(texts) == 2
    assert "'events'" in texts[0]
    assert "300 of the 400" in texts[0]
    assert "75.0%" in texts[0]
    again = LeakageReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    strict = check_leakage(
        X[:150], y[:150], X[150:], y[150:], task="classification",
        views=views, config=GateConfig(leakage_max_exact_time_share=0.8),
    )  # fmt: skip
    assert strict.suspect_views == []
    warned = judge(_report(), config=GateConfig(robustness=False), leakage=report)
    assert warned.status == "BLESSED"
    assert any("'events'" in w for w in warned.warnings)
    failed = judge(
        _report(), config=GateConfig(robustness=False, fail_on_leakage=True), leakage=report
    )
    assert failed.status == "NOT_BLESSED"
    assert any("'events'" in reason for reason in failed.reasons)


def test_a_report_stored_before_the_tie_report_still_loads() -> None:
    _rng, y = _frames(200, 10)
    X = pd.DataFrame({"x": np.arange(200.0)})
    report = check_leakage(X[:150], y[:150], X[150:], y[150:], task="classification")
    stored = report.to_dict()
    for key in ("views", "suspect_views", "max_exact_time_share"):
        stored.pop(key)
    loaded = LeakageReport.from_dict(stored)
    assert loaded.views == {}
    assert loaded.features == report.features


def test_exact_time_share_must_be_a_share() -> None:
    with pytest.raises(ValidationError, match="leakage_max_exact_time_share"):
        GateConfig(leakage_max_exact_time_share=0.0)
    with pytest.raises(ValidationError, match="leakage_max_exact_time_share"):
        GateConfig(leakage_max_exact_time_share=1.5)
