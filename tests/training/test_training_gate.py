"""The blessing gate: every rule passing and failing, with the messages users read."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.core import GateConfig, MetricChange
from prodml.core.errors import ConfigError, SchemaError
from prodml.training._evaluate import EvaluationReport, SliceResult, evaluate
from prodml.training._gate import GateCheck, GateResult, Threshold, judge, parse_threshold


def _report(
    metrics: dict[str, float],
    *,
    slices: dict[str, dict[str, dict[str, float]]] | None = None,
    performance: dict[str, float] | None = None,
) -> EvaluationReport:
    return EvaluationReport(
        task="classification",
        rows=1000,
        metrics=metrics,
        slices={
            column: {value: SliceResult(200, m) for value, m in values.items()}
            for column, values in (slices or {}).items()
        },
        reliability=None,
        performance=performance or {},
    )


def _config(**kwargs: Any) -> GateConfig:
    kwargs.setdefault("robustness", False)
    return GateConfig(**kwargs)


def _change(metric: str, max_degradation: float, **kwargs: Any) -> MetricChange:
    return MetricChange(metric=metric, max_degradation=max_degradation, **kwargs)


# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("roc_auc >= 0.70", Threshold("roc_auc", ">=", 0.7)),
        ("rmse<1e-2", Threshold("rmse", "<", 0.01)),
        ("  latency_p99_ms <= 50 ", Threshold("latency_p99_ms", "<=", 50.0)),
        ("r2 > -.5", Threshold("r2", ">", -0.5)),
    ],
)
def test_parse_threshold(text: str, expected: Threshold) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize(
    "text",
    ["roc_auc == 0.7", "roc_auc >= high", ">= 0.7", "roc auc >= 0.7", "", "roc_auc >= 0.7 x"],
)
def test_parse_threshold_errors_name_the_text_and_form(text: str) -> None:
    with pytest.raises(ConfigError, match="metric >= number") as err:
        parse_threshold(text)
    assert repr(text) in str(err.value)


def test_bad_threshold_in_config_raises_from_judge() -> None:
    with pytest.raises(ConfigError, match=re.escape("roc_auc => 0.7")):
        judge(_report({"roc_auc": 0.8}), config=_config(thresholds=("roc_auc => 0.7",)))


# --- value thresholds ------------------------------------------------------------------


def test_value_threshold_pass_and_fail_messages() -> None:
    config = _config(thresholds=("roc_auc >= 0.70",))
    failed = judge(_report({"roc_auc": 0.684}), config=config)
    assert failed.status == "NOT_BLESSED"
    assert not failed.blessed
    assert failed.reasons == ["roc_auc 0.684 < 0.700"]
    (check,) = failed.checks
    assert check == GateCheck(
        "roc_auc >= 0.7", False, "roc_auc 0.684 < 0.700", "roc_auc", 0.684, 0.7
    )
    passed = judge(_report({"roc_auc": 0.712}), config=config)
    assert passed.blessed
    assert passed.reasons == []
    assert passed.checks[0].detail == "roc_auc 0.712 >= 0.700"


@pytest.mark.parametrize(
    ("op", "value", "passed"),
    [(">=", 0.5, True), (">", 0.5, False), ("<=", 0.5, True), ("<", 0.5, False),
     (">", 0.6, True), ("<", 0.4, True), (">=", 0.4, False), ("<=", 0.6, False)],
)  # fmt: skip
def test_each_operator_at_and_around_the_bound(op: str, value: float, passed: bool) -> None:
    result = judge(_report({"f1": value}), config=_config(thresholds=(f"f1 {op} 0.5",)))
    assert result.blessed is passed


def test_unknown_metric_is_a_failed_check_listing_known_ones() -> None:
    report = _report({"roc_auc": 0.8}, performance={"latency_p99_ms": 3.0})
    result = judge(report, config=_config(thresholds=("roc_aux >= 0.7",)))
    assert not result.blessed
    assert "roc_aux" in result.reasons[0]
    assert "latency_p99_ms, roc_auc" in result.reasons[0]


def test_nan_metric_fails_its_threshold() -> None:
    result = judge(_report({"roc_auc": math.nan}), config=_config(thresholds=("roc_auc >= 0.5",)))
    assert not result.blessed
    assert "NaN" in result.reasons[0]
    assert result.checks[0].value is None


def test_thresholds_also_read_performance() -> None:
    report = _report({}, performance={"throughput_rows_per_s": 12_000.0})
    result = judge(report, config=_config(thresholds=("throughput_rows_per_s >= 10000",)))
    assert result.blessed


# --- changes against the champion ------------------------------------------------------


def test_absolute_drop_beyond_allowance_fails_with_numbers() -> None:
    config = _config(change=(_change("roc_auc", 0.01),))
    champion = _report({"roc_auc": 0.712})
    result = judge(
        _report({"roc_auc": 0.691}), config=config, champion=champion, champion_ref="flight_delay:1"
    )
    assert result.champion == "flight_delay:1"
    assert result.reasons == [
        "roc_auc dropped 0.021 vs champion flight_delay:1 (0.712 → 0.691), allowed 0.010"
    ]
    check = result.checks[0]
    assert (check.name, check.value, check.reference) == ("roc_auc vs champion", 0.691, 0.712)
    ok = judge(_report({"roc_auc": 0.705}), config=config, champion=champion)
    assert ok.blessed
    assert "dropped 0.007 vs champion (" in ok.checks[0].detail
    better = judge(_report({"roc_auc": 0.75}), config=config, champion=champion)
    assert better.blessed
    assert "rose" in better.checks[0].detail


def test_lower_is_better_metrics_degrade_upwards() -> None:
    config = _config(change=(_change("brier", 0.01),))
    champion = _report({"brier": 0.100})
    assert judge(_report({"brier": 0.105}), config=config, champion=champion).blessed
    worse = judge(_report({"brier": 0.12}), config=config, champion=champion)
    assert not worse.blessed
    assert "brier rose 0.020" in worse.reasons[0]
    assert judge(_report({"brier": 0.05}), config=config, champion=champion).blessed


def test_relative_change_divides_by_the_champion() -> None:
    config = _config(change=(_change("rmse", 0.05, relative=True),))
    champion = _report({"rmse": 10.0})
    assert judge(_report({"rmse": 10.4}), config=config, champion=champion).blessed
    worse = judge(_report({"rmse": 10.6}), config=config, champion=champion)
    assert not worse.blessed
    assert worse.reasons == ["rmse rose 6.0% vs champion (10.000 → 10.600), allowed 5.0%"]


def test_relative_change_from_a_zero_champion() -> None:
    config = _config(change=(_change("mae", 0.1, relative=True),))
    champion = _report({"mae": 0.0})
    assert judge(_report({"mae": 0.0}), config=config, champion=champion).blessed
    assert not judge(_report({"mae": 0.001}), config=config, champion=champion).blessed


def test_direction_override_and_unknown_direction() -> None:
    override = _config(change=(_change("roc_auc", 0.0, direction="lower"),))
    champion = _report({"roc_auc": 0.7, "mean_score": 0.3})
    assert not judge(_report({"roc_auc": 0.8}), config=override, champion=champion).blessed
    custom = _config(change=(_change("mean_score", 0.01, direction="higher"),))
    assert judge(_report({"mean_score": 0.295}), config=custom, champion=champion).blessed
    unknown = _config(change=(_change("mean_score", 0.01),))
    with pytest.raises(ConfigError, match="mean_score"):
        judge(_report({"mean_score": 0.3}), config=unknown, champion=champion)
    with pytest.raises(ConfigError, match="direction"):
        judge(_report({"mean_score": 0.3}), config=unknown)  # even for a first model


def test_nan_or_missing_metric_fails_the_change() -> None:
    config = _config(change=(_change("roc_auc", 0.01),))
    nan_champion = judge(
        _report({"roc_auc": 0.7}), config=config, champion=_report({"roc_auc": math.nan})
    )
    assert not nan_champion.blessed
    assert "NaN" in nan_champion.reasons[0]
    assert nan_champion.checks[0].reference is None
    missing = judge(_report({}), config=config, champion=_report({"roc_auc": 0.7}))
    assert not missing.blessed
    assert "missing" in missing.reasons[0]


def test_per_slice_failure_names_the_slice() -> None:
    config = _config(change=(_change("roc_auc", 0.02, per_slice=True),))
    champion = _report(
        {"roc_auc": 0.72},
        slices={"origin": {"JFK": {"roc_auc": 0.75}, "LGA": {"roc_auc": 0.70}, "EWR": {}}},
    )
    candidate = _report(
        {"roc_auc": 0.72},
        slices={
            "origin": {"JFK": {"roc_auc": 0.70}, "LGA": {"roc_auc": 0.71}, "SFO": {"roc_auc": 0.1}},
            "carrier": {"UA": {"roc_auc": 0.1}},
        },
    )
    result = judge(candidate, config=config, champion=champion, champion_ref="flight_delay:1")
    names = [check.name for check in result.checks]
    assert names == ["roc_auc vs champion", "roc_auc vs champion [origin=JFK]",
                     "roc_auc vs champion [origin=LGA]"]  # fmt: skip
    failed = [check for check in result.checks if not check.passed]
    assert [check.slice for check in failed] == ["origin=JFK"]
    assert result.reasons == [
        "roc_auc in slice origin=JFK dropped 0.050 vs champion flight_delay:1 "
        "(0.750 → 0.700), allowed 0.020"
    ]


def test_first_model_is_judged_on_value_thresholds_alone() -> None:
    config = _config(thresholds=("roc_auc >= 0.6",), change=(_change("roc_auc", 0.0),))
    result = judge(_report({"roc_auc": 0.65}), config=config)
    assert result.blessed
    assert result.champion is None
    assert [check.name for check in result.checks] == ["roc_auc >= 0.6", "champion"]
    assert "first model" in result.checks[1].detail
    assert [c.name for c in judge(_report({"roc_auc": 0.65}), config=_config()).checks] == []


# --- latency and robustness ------------------------------------------------------------


def test_latency_budget() -> None:
    config = _config(latency_p99_ms=20.0)
    fast = judge(_report({}, performance={"latency_p99_ms": 12.5}), config=config)
    assert fast.blessed
    assert fast.checks[0].detail == "latency_p99_ms 12.500 ms <= budget 20.000 ms"
    slow = judge(_report({}, performance={"latency_p99_ms": 31.0}), config=config)
    assert slow.reasons == ["latency_p99_ms 31.000 ms > budget 20.000 ms"]
    missing = judge(_report({"latency_p99_ms": 1.0}), config=config)  # must be in performance
    assert not missing.blessed
    assert "not measured" in missing.reasons[0]


@pytest.mark.parametrize(
    ("passed", "blessed", "reason"),
    [
        (None, False, "robustness suite not run"),
        (False, False, "robustness suite failed: 2 of 9 cases failed"),
        (True, True, None),
    ],
)
def test_robustness(passed: bool | None, blessed: bool, reason: str | None) -> None:
    result = judge(
        _report({}),
        config=GateConfig(robustness=True),
        robustness_passed=passed,
        robustness_detail="2 of 9 cases failed",
    )
    assert result.blessed is blessed
    assert result.reasons == ([] if reason is None else [reason])
    assert result.checks[0].name == "robustness"


def test_robustness_ignored_when_not_configured() -> None:
    assert judge(_report({}), config=_config(), robustness_passed=False).checks == ()


# --- records ---------------------------------------------------------------------------


def test_result_round_trips_through_json() -> None:
    config = GateConfig(
        thresholds=("roc_auc >= 0.7", "brier <= 0.2", "nope > 1"),
        change=(_change("roc_auc", 0.01, per_slice=True),),
        latency_p99_ms=10.0,
    )
    candidate = _report(
        {"roc_auc": math.nan, "brier": 0.1},
        slices={"origin": {"JFK": {"roc_auc": 0.7}}},
        performance={"latency_p99_ms": 4.0},
    )
    champion = _report({"roc_auc": 0.7}, slices={"origin": {"JFK": {"roc_auc": 0.72}}})
    result = judge(candidate, config=config, champion=champion, champion_ref="m:1")
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert GateResult.from_dict(json.loads(text)) == result
    assert len(result.reasons) == 5  # NaN threshold, unknown metric, NaN change, slice, robustness
    with pytest.raises(SchemaError, match="status"):
        GateResult.from_dict({**result.to_dict(), "status": "MAYBE"})


def test_judge_on_real_evaluation_reports() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    y = rng.random(n) < 0.3
    seg = pd.DataFrame({"origin": rng.choice(["JFK", "LGA"], n)})
    good = np.clip(y * 0.4 + rng.random(n) * 0.6, 0, 1)
    noise = rng.random(n)
    champion = evaluate(y, good, task="classification", segments=seg)
    config = _config(
        thresholds=("roc_auc >= 0.7",), change=(_change("roc_auc", 0.01, per_slice=True),)
    )
    assert judge(champion, config=config, champion=champion).blessed
    candidate = evaluate(y, noise, task="classification", segments=seg)
    result = judge(candidate, config=config, champion=champion)
    assert not result.blessed
    assert {c.slice for c in result.checks if not c.passed} == {None, "origin=JFK", "origin=LGA"}


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-1e3, 1e3),
    st.floats(-1e3, 1e3),
    st.floats(0, 10),
    st.sampled_from(["roc_auc", "rmse"]),
)
def test_change_verdict_matches_the_definition(
    champion: float, candidate: float, allowed: float, metric: str
) -> None:
    config = _config(change=(_change(metric, allowed),))
    result = judge(
        _report({metric: candidate}), config=config, champion=_report({metric: champion})
    )
    loss = champion - candidate if metric == "roc_auc" else candidate - champion
    assert result.blessed is (loss <= allowed)
