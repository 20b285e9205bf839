"""Experiment analysis over synthetic logs with known effects: each per-arm number
against a brute-force pandas computation on the same records, verdicts, SRM,
guardrails, paired shadow comparisons, segments, time buckets, the bandit view and bad
input."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.core import SimulatedClock
from prodml.core.errors import DefinitionError, NotFoundError, SchemaError
from prodml.monitoring._records import LabelIndex
from prodml.rollout import Guardrail
from prodml.rollout._analysis import ExperimentAnalysis, analyze_experiment
from prodml.rollout._analysis_metrics import _latency_figures, quantile_ranks
from prodml.stats import (
    delong_test,
    msprt_means,
    paired_differences,
    roc_auc,
    segment_effects,
    two_proportion_ztest,
    welch_ttest_from_stats,
)
from prodml.stats._auc import delong_auc
from prodml.storage import LogStores, open_log_stores

E = "delay"
T0 = datetime(2013, 3, 1, tzinfo=UTC)
EPS = float(np.finfo(np.float64).eps)


@dataclass
class Arm:
    weight: float
    role: str
    quality: float = 0.3
    latency: float = 5.0
    error: float = 0.0
    fallback: float = 0.0


@dataclass
class Shadow:
    name: str
    of: str
    quality: float


@dataclass
class Scenario:
    arms: dict[str, Arm]
    n: int = 2000
    seed: int = 0
    hours: int = 72
    units: int | None = None
    shadow: Shadow | None = None
    label_share: float = 1.0
    multirow: bool = False
    relabel: bool = False
    rewards: bool = False
    propensity: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)


def score(rng: np.random.Generator, y: np.ndarray, quality: float) -> np.ndarray:
    return np.clip(0.5 + quality * (y - 0.5) + rng.normal(0, 0.2, len(y)), 0.01, 0.99)


def simulate(s: Scenario) -> Scenario:
    """Requests routed by unit (sticky), optional multi-row requests, errors, fallbacks
    to the champion, a shadow arm, labels (some missing, some relabelled, some per row)
    and 0/1 rewards."""
    rng = np.random.default_rng(s.seed)
    names = list(s.arms)
    weights = np.array([s.arms[a].weight for a in names])
    units = s.units or max(2, s.n // 3)
    unit_arm = rng.choice(len(names), size=units, p=weights / weights.sum())
    champion = next(a for a in names if s.arms[a].role == "champion")
    origins = np.array(["EWR", "JFK", "LGA"])
    for i in range(s.n):
        unit = int(rng.integers(0, units))
        name = names[unit_arm[unit]]
        arm = s.arms[name]
        rows = int(rng.integers(1, 4)) if s.multirow else 1
        time = T0 + timedelta(seconds=3600 * s.hours * i / s.n)
        y = (rng.random(rows) < 0.3).astype(float)
        failed = rng.random() < arm.error
        fell = not failed and name != champion and rng.random() < arm.fallback
        answered = champion if fell else name
        scores = score(rng, y, s.arms[answered].quality)
        latency = float(rng.gamma(2.0, arm.latency / 2))
        rid = f"r{i}"
        for r in range(rows):
            s.records.append({
                "time": time, "request_id": rid, "endpoint": E, "arm": answered,
                "role": s.arms[answered].role, "model_version": f"m:{names.index(answered) + 1}",
                "unit": f"u{unit}", "stratum": None,
                "status": "error" if failed else "fallback" if fell else "ok",
                "shadow": False, "shadow_of": None, "latency_ms": latency,
                "propensity": float(weights[names.index(name)]) if s.propensity else None,
                "fallback_from": name if fell else None,
                "error": "ModelError" if failed else None, "row": r,
                "output": None if failed else float(scores[r]),
                "feature.origin": str(origins[rng.integers(0, 3)]),
            })  # fmt: skip
            if s.shadow is not None and answered == s.shadow.of and not failed:
                shadow_score = score(rng, y[r : r + 1], s.shadow.quality)[0]
                s.records.append({
                    "time": time, "request_id": rid, "endpoint": E, "arm": s.shadow.name,
                    "role": "shadow", "model_version": "m:9", "unit": f"u{unit}",
                    "status": "ok", "shadow": True, "shadow_of": answered,
                    "latency_ms": latency * 2, "row": r, "output": float(shadow_score),
                })  # fmt: skip
        if rng.random() >= s.label_share:
            continue
        later = time + timedelta(hours=1)
        reward = float(rng.random() < 0.2 + 0.1 * names.index(name)) if s.rewards else None
        if s.multirow:
            if s.relabel:  # a whole-request label the row labels override
                s.labels.append({"time": later, "endpoint": E, "request_id": rid,
                                 "label": 1.0 - y[0], "source": "feedback"})  # fmt: skip
            for r in range(rows):
                s.labels.append({"time": later, "endpoint": E, "request_id": rid, "row": r,
                                 "label": bool(y[r]), "reward": reward, "source": "feedback"})  # fmt: skip
        else:
            if s.relabel and i % 5 == 0:  # a wrong first label, corrected later
                s.labels.append({"time": later, "endpoint": E, "request_id": rid,
                                 "label": not y[0], "source": "feedback"})  # fmt: skip
                later += timedelta(minutes=5)
            s.labels.append({"time": later, "endpoint": E, "request_id": rid,
                             "label": bool(y[0]), "reward": reward, "source": "feedback"})  # fmt: skip
    return s


def write(logs: LogStores, s: Scenario) -> LogStores:
    clock = SimulatedClock(T0)
    for log, records in ((logs.predictions, s.records), (logs.labels, s.labels)):
        with log.open_writer(clock=clock) as writer:
            assert writer.extend(records) == len(records)
    return logs


def logged(tmp_path: Path, s: Scenario, kind: str = "local") -> LogStores:
    return write(open_log_stores(tmp_path, kind), simulate(s))


TWO = {"champion": Arm(0.5, "champion"), "challenger": Arm(0.5, "canary")}


# -- brute force ------------------------------------------------------------------------------


def frame(logs: LogStores) -> pd.DataFrame:
    """Every record with its assigned arm and its latest label (LabelIndex + the
    monitor's rule: a row's own label over its request's)."""
    p = logs.predictions.read(endpoint=E).to_pandas()
    labels = LabelIndex(logs.labels, E).get(T0 - timedelta(days=1)).to_pandas()
    p["shadow"] = p["shadow"].fillna(False).astype(bool)
    p["assigned"] = np.where(p["shadow"], p["arm"], p["fallback_from"].fillna(p["arm"]))
    by_request = labels[labels["row"].isna()].set_index("request_id")["label"]
    by_row = labels[labels["row"].notna()].set_index(["request_id", "row"])["label"]
    p["label"] = p["request_id"].map(by_request)
    keys = pd.MultiIndex.from_arrays([p["request_id"], p["row"].astype(float)])
    own = pd.Series(by_row.to_numpy(), index=pd.MultiIndex.from_arrays(
        [by_row.index.get_level_values(0), by_row.index.get_level_values(1).astype(float)]))  # fmt: skip
    row_label = own.reindex(keys).to_numpy()
    p["label"] = np.where(np.isnan(row_label), p["label"], row_label)
    return p


def log_loss_rows(y: pd.Series, p: pd.Series) -> np.ndarray:
    likelihood = np.clip(np.where(y == 1, p, 1 - p), EPS, 1 - EPS)
    return -np.log(likelihood)


# -- golden per-arm numbers -------------------------------------------------------------------


def test_per_arm_numbers_equal_a_brute_force_pandas_computation(tmp_path: Path) -> None:
    arms = {
        "champion": Arm(0.5, "champion", latency=5.0, error=0.02),
        "challenger": Arm(0.5, "canary", quality=0.4, latency=6.0, error=0.03, fallback=0.05),
    }
    logs = logged(tmp_path, Scenario(arms, n=3000, multirow=True, relabel=True,
                                     label_share=0.8, shadow=Shadow("s", "champion", 0.35)))  # fmt: skip
    result = analyze_experiment(logs, E)
    p = frame(logs)
    assert result.champion == "champion"
    assert {(a.arm, a.shadow) for a in result.arms} == {
        ("champion", False), ("challenger", False), ("s", True)}  # fmt: skip
    for (name, shadow), g in p.groupby(["assigned", "shadow"]):
        arm = result.arm(str(name), shadow=bool(shadow))
        own = g[g["fallback_from"].isna()]
        labelled = own[own["output"].notna() & own["label"].notna()]
        losses = log_loss_rows(labelled["label"], labelled["output"])
        assert (arm.records, arm.requests, arm.units) == (
            len(g), g["request_id"].nunique(), g["unit"].nunique())  # fmt: skip
        assert arm.errors == (g["status"] == "error").sum()
        assert arm.fallbacks == g["fallback_from"].notna().sum()
        assert arm.error_rate == pytest.approx((g["status"] == "error").mean(), abs=1e-15)
        assert arm.labelled == len(labelled) == arm.metric["n"]
        assert arm.metric["value"] == pytest.approx(losses.mean(), rel=1e-12)
        assert arm.metric["variance"] == pytest.approx(losses.var(ddof=1), rel=1e-10)
        for q, got in ((0.5, arm.latency_p50_ms), (0.95, arm.latency_p95_ms), (0.99, arm.latency_p99_ms)):  # fmt: skip
            assert got == pytest.approx(g["latency_ms"].quantile(q), rel=1e-12)
        assert arm.latency_mean_ms == pytest.approx(g["latency_ms"].mean(), rel=1e-12)
        assert arm.role == own["role"].mode()[0]
        assert arm.model_versions == tuple(sorted(own["model_version"].unique()))
    json.dumps(result.to_dict(), allow_nan=False)


def test_labels_are_latest_per_request_and_row_as_label_index_has_them(tmp_path: Path) -> None:
    for i, multirow in enumerate((False, True)):
        logs = logged(tmp_path / str(i), Scenario(TWO, n=600, multirow=multirow, relabel=True))
        p = frame(logs)
        result = analyze_experiment(logs, E, metric="brier")
        for name, g in p[p["label"].notna()].groupby("assigned"):
            expected = ((g["output"] - g["label"]) ** 2).mean()
            assert result.arm(str(name)).metric["value"] == pytest.approx(expected, rel=1e-12)


def test_roc_auc_arms_carry_the_auc_and_its_delong_variance(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=1500))
    result = analyze_experiment(logs, E, metric="roc_auc")
    p = frame(logs)
    values = {}
    for name in ("champion", "challenger"):
        g = p[(p["assigned"] == name) & p["label"].notna()]
        auc, var = delong_auc(g["label"].to_numpy(), g["output"].to_numpy())
        assert auc == pytest.approx(roc_auc(g["label"], g["output"]), abs=1e-12)
        assert result.arm(name).metric["value"] == pytest.approx(auc, abs=1e-12)
        assert result.arm(name).metric["variance"] == pytest.approx(var, rel=1e-10)
        values[name] = (auc, var)
    test = result.comparison("challenger").test
    assert test is not None
    diff = values["challenger"][0] - values["champion"][0]
    assert test["estimate"] == pytest.approx(diff, abs=1e-12)
    assert test["std_error"] == pytest.approx(math.sqrt(values["challenger"][1] + values["champion"][1]))  # fmt: skip


def test_fixed_horizon_and_sequential_tests_are_the_stats_functions(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=1500))
    result = analyze_experiment(logs, E, planned_n=5000)
    c, a = result.arm("champion").metric, result.arm("challenger").metric
    comparison = result.comparison("challenger")
    welch = welch_ttest_from_stats(
        mean_control=c["mean"], sd_control=math.sqrt(c["variance"]), n_control=c["n"],
        mean_treatment=a["mean"], sd_treatment=math.sqrt(a["variance"]), n_treatment=a["n"])  # fmt: skip
    assert comparison.test == welch.to_dict()
    seq = msprt_means([c["n"]], [c["mean"]], [c["variance"]], [a["n"]], [a["mean"]],
                      [a["variance"]], planned_n=5000)  # fmt: skip
    # log loss: lower is better, so the improvement's sequence is the difference's negated
    assert comparison.sequential is not None
    assert comparison.sequential["lower"] == pytest.approx(-seq.upper[-1])
    assert comparison.sequential["upper"] == pytest.approx(-seq.lower[-1])
    assert comparison.improvement == pytest.approx(c["mean"] - a["mean"])
    accuracy = analyze_experiment(logs, E, metric="accuracy", threshold=0.4)
    c, a = accuracy.arm("champion").metric, accuracy.arm("challenger").metric
    z = two_proportion_ztest(c["successes"], c["n"], a["successes"], a["n"])
    assert accuracy.comparison("challenger").test == z.to_dict()


# -- verdicts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quality", "verdict"), [(0.6, "better"), (0.0, "worse"), (0.3, "inconclusive")]
)
def test_the_verdict_follows_the_true_effect(tmp_path: Path, quality: float, verdict: str) -> None:
    arms = {"champion": Arm(0.5, "champion", quality=0.3), "challenger": Arm(0.5, "canary", quality=quality)}  # fmt: skip
    logs = logged(tmp_path, Scenario(arms, n=6000, seed=1))
    for metric in ("log_loss", "roc_auc", "brier"):
        comparison = analyze_experiment(logs, E, metric=metric, min_effect=0.001).comparison("challenger")  # fmt: skip
        assert comparison.verdict == verdict, metric
        assert comparison.practical == (verdict == "better")
        assert comparison.power is not None
        assert 0 < comparison.power <= 1


def test_a_biased_split_is_a_sample_ratio_mismatch(tmp_path: Path) -> None:
    biased = {"champion": Arm(0.6, "champion"), "challenger": Arm(0.4, "canary")}
    logs = logged(tmp_path, Scenario(biased, n=9000, units=6000))
    expected = {"champion": 0.5, "challenger": 0.5}
    result = analyze_experiment(logs, E, expected_weights=expected)
    assert result.srm is not None
    assert result.srm["mismatch"]
    assert result.srm["p"] < 1e-3
    fair = logged(tmp_path / "fair", Scenario(TWO, n=9000, units=6000))
    assert not analyze_experiment(fair, E, expected_weights=expected).srm["mismatch"]  # type: ignore[index]
    p = frame(logs)
    since = T0 + timedelta(hours=36)
    late = analyze_experiment(logs, E, expected_weights=expected, srm_start=since).srm
    assert late is not None
    assert late["observed"] == [
        p[(p["assigned"] == name) & (p["time"] >= since)]["unit"].nunique() for name in late["arms"]
    ]
    assert analyze_experiment(logs, E, expected_weights={"champion": 1.0, "x": 0}).srm is None


def test_a_slow_arm_breaches_the_p99_guardrail_and_a_fast_one_is_non_inferior(tmp_path: Path) -> None:  # fmt: skip
    slow = {"champion": Arm(0.5, "champion", latency=5.0), "challenger": Arm(0.5, "canary", latency=10.0)}  # fmt: skip
    rail = Guardrail("p99_latency_ms", 0.2, relative=True)
    check = analyze_experiment(logged(tmp_path, Scenario(slow, n=4000)), E, guardrails=[rail])
    (p99,) = check.comparison("challenger").guardrails
    assert p99.status == "breached"
    assert p99.lower is not None
    assert p99.lower > p99.allowance
    fast = analyze_experiment(logged(tmp_path / "f", Scenario(TWO, n=20_000)), E, guardrails=[rail])
    assert fast.comparison("challenger").guardrails[0].status == "non_inferior"


def test_rate_guardrails_decide_even_with_no_failure_at_all(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=3000))
    rails = [Guardrail("error_rate", 0.01), Guardrail("fallback_rate", 0.01)]
    checks = analyze_experiment(logs, E, guardrails=rails).comparison("challenger").guardrails
    assert [c.status for c in checks] == ["non_inferior", "non_inferior"]
    failing = {"champion": Arm(0.5, "champion"), "challenger": Arm(0.5, "canary", error=0.1)}
    logs = logged(tmp_path / "f", Scenario(failing, n=3000))
    (check,) = analyze_experiment(logs, E, guardrails=rails[:1]).comparison("challenger").guardrails
    assert check.status == "breached"
    assert check.test is not None
    assert not check.test["non_inferior"]


def test_a_shifted_challenger_breaches_the_prediction_shift_guardrail(tmp_path: Path) -> None:
    shifted = {"champion": Arm(0.5, "champion", quality=0.3), "challenger": Arm(0.5, "canary", quality=0.9)}  # fmt: skip
    rail = Guardrail("prediction_shift", 0.1)
    result = analyze_experiment(logged(tmp_path, Scenario(shifted, n=3000)), E, guardrails=[rail])
    assert result.comparison("challenger").guardrails[0].status == "breached"
    few = analyze_experiment(logged(tmp_path / "few", Scenario(shifted, n=150)), E, guardrails=[rail])  # fmt: skip
    assert few.comparison("challenger").guardrails[0].status == "inconclusive"


# -- shadow, segments, time, bandit -----------------------------------------------------------


def test_shadow_arms_are_compared_with_their_live_arm_on_the_same_rows(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=1200, multirow=True, shadow=Shadow("s", "champion", 0.5)))  # fmt: skip
    (paired,) = analyze_experiment(logs, E).paired
    p = frame(logs)
    live = p[~p["shadow"] & (p["arm"] == "champion") & p["fallback_from"].isna()]
    shadow = p[p["shadow"]]
    joined = shadow.merge(live, on=["request_id", "row"], suffixes=("_s", "_l"))
    joined = joined[joined["label_l"].notna()]
    y, a, b = joined["label_l"], joined["output_l"], joined["output_s"]
    assert (paired["shadow"], paired["live"], paired["n"]) == ("s", "champion", len(joined))
    expected = paired_differences(y, a, b)
    for name in ("log_loss", "brier", "accuracy"):
        assert paired["metrics"][name] == pytest.approx(expected[name].to_dict())
    assert paired["metrics"]["roc_auc"] == pytest.approx(delong_test(y, a, b).to_dict())


def test_segments_are_segment_effects_within_each_value(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=1500))
    result = analyze_experiment(logs, E, segment_by="feature.origin")
    p = frame(logs)
    g = p[p["label"].notna() & p["fallback_from"].isna()]
    expected = segment_effects(
        (g["assigned"] == "challenger").to_numpy(), log_loss_rows(g["label"], g["output"]),
        g["feature.origin"].to_numpy()).to_dict()  # fmt: skip
    assert result.segments is not None
    got = result.segments["challenger"]
    assert {k: got[k] for k in ("kind", "method", "alpha")} == {"kind": "mean", "method": "holm", "alpha": 0.05}  # fmt: skip
    assert len(got["segments"]) == len(expected["segments"]) == 3
    for mine, theirs in zip(got["segments"], expected["segments"], strict=True):
        assert mine == pytest.approx(theirs)
    auc = analyze_experiment(logs, E, metric="roc_auc", segment_by="feature.origin")
    assert [s["segment"] for s in auc.segments["challenger"]["segments"]] == ["EWR", "JFK", "LGA"]  # type: ignore[index]


def test_the_effect_over_time_is_per_utc_bucket(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=1500, hours=72))
    result = analyze_experiment(logs, E, bucket="day")
    p = frame(logs)
    g = p[p["label"].notna()].assign(day=lambda d: d["time"].dt.floor("D"))
    assert [b["start"] for b in result.over_time] == [d.isoformat() for d in sorted(g["day"].unique())]  # fmt: skip
    for bucket, (_day, part) in zip(result.over_time, g.groupby("day"), strict=True):
        for name, arm in part.groupby("assigned"):
            losses = log_loss_rows(arm["label"], arm["output"])
            assert bucket["arms"][name]["n"] == len(arm)
            assert bucket["arms"][name]["value"] == pytest.approx(losses.mean(), rel=1e-12)
        effect = bucket["comparisons"]["challenger"]
        assert effect["ci_low"] < effect["estimate"] < effect["ci_high"]
    assert len(analyze_experiment(logs, E, bucket="hour").over_time) == 72


def test_the_bandit_view_has_posteriors_win_probabilities_and_regret(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=3000, rewards=True, propensity=True))
    bandit = analyze_experiment(logs, E, metric="reward").bandit
    assert bandit is not None
    assert bandit["kind"] == "bernoulli"
    p = frame(logs)
    rewards = logs.labels.read(endpoint=E, columns=["request_id", "reward"]).to_pandas()
    joined = p.merge(rewards, on="request_id")
    means = {}
    for name, g in joined.groupby("assigned"):
        arm = bandit["arms"][name]
        wins, n = g["reward"].sum(), len(g)
        means[name] = (1 + wins) / (2 + n)
        assert arm["rewards"] == n
        assert arm["posterior_mean"] == pytest.approx(means[name])
    assert sum(a["prob_best"] for a in bandit["arms"].values()) == pytest.approx(1.0)
    assert bandit["arms"]["challenger"]["prob_best"] > 0.99  # rewards 0.3 against 0.2
    best = max(means.values())
    regret = sum(bandit["arms"][k]["rewards"] * (best - m) for k, m in means.items())
    assert bandit["regret"] == pytest.approx(regret)
    assert analyze_experiment(logs, E).bandit is not None
    assert analyze_experiment(logged(tmp_path / "none", Scenario(TWO, n=100)), E).bandit is None


def test_the_memory_log_store_gives_the_same_analysis(tmp_path: Path) -> None:
    s = Scenario(TWO, n=800, multirow=True, relabel=True)
    local = analyze_experiment(logged(tmp_path, s), E, guardrails=[Guardrail("error_rate", 0.01)])
    memory = analyze_experiment(write(open_log_stores(tmp_path, "memory"), s), E,
                                guardrails=[Guardrail("error_rate", 0.01)])  # fmt: skip
    assert memory.to_dict() == local.to_dict()


# -- property ---------------------------------------------------------------------------------


@settings(max_examples=40)
@given(
    n=st.integers(1, 40),
    arms=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    label_share=st.floats(0.0, 1.0),
)
def test_per_arm_counts_and_means_equal_a_pandas_groupby(n: int, arms: int, seed: int, label_share: float) -> None:  # fmt: skip
    names = ["champion", "b", "c"][:arms]
    spec = {name: Arm(1.0, "champion" if name == "champion" else "canary", error=0.2,
                      fallback=0.2) for name in names}  # fmt: skip
    s = simulate(Scenario(spec, n=n, seed=seed, units=5, label_share=label_share, multirow=True))
    logs = write(open_log_stores(Path("unused"), "memory"), s)
    result = analyze_experiment(logs, E)
    p = frame(logs)
    summary = p.groupby("assigned").agg(
        records=("request_id", "size"), requests=("request_id", "nunique"),
        units=("unit", "nunique"), errors=("status", lambda s: (s == "error").sum()),
    )  # fmt: skip
    assert sorted(a.arm for a in result.arms) == sorted(summary.index)
    for name, row in summary.iterrows():
        arm = result.arm(str(name))
        assert (arm.records, arm.requests, arm.units, arm.errors) == tuple(row)
        g = p[(p["assigned"] == name) & p["fallback_from"].isna() & p["label"].notna()]
        g = g[g["output"].notna()]
        assert arm.metric["n"] == len(g)
        if len(g):
            assert arm.metric["mean"] == pytest.approx(
                log_loss_rows(g["label"], g["output"]).mean()
            )


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    logs = logged(tmp_path, Scenario(TWO, n=200))
    with pytest.raises(DefinitionError, match="metric 'auc' is unknown"):
        analyze_experiment(logs, E, metric="auc")
    with pytest.raises(DefinitionError, match="metric 'error_rate' is unknown"):
        analyze_experiment(logs, E, metric="error_rate")
    with pytest.raises(NotFoundError, match="endpoint 'nowhere': no prediction records"):
        analyze_experiment(logs, "nowhere")
    with pytest.raises(NotFoundError, match=r"endpoint 'delay': no prediction records in \[2020"):
        analyze_experiment(logs, E, start=datetime(2020, 1, 1), end=datetime(2020, 1, 2))
    with pytest.raises(DefinitionError, match=r"segment_by 'feature\.nope'.*'feature\.origin'"):
        analyze_experiment(logs, E, segment_by="feature.nope")
    with pytest.raises(DefinitionError, match=r"champion 'old' .*\['challenger', 'champion'\]"):
        analyze_experiment(logs, E, champion="old")


def test_non_binary_labels_are_a_schema_error_for_a_model_metric(tmp_path: Path) -> None:
    s = simulate(Scenario(TWO, n=50))
    s.labels[0]["label"] = 3.5
    logs = write(open_log_stores(tmp_path), s)
    with pytest.raises(SchemaError, match=r"metric 'log_loss' needs binary labels.*3\.5"):
        analyze_experiment(logs, E)


def test_one_live_arm_has_no_comparison_and_an_explicit_champion_is_honoured(tmp_path: Path) -> None:  # fmt: skip
    logs = logged(tmp_path, Scenario({"champion": Arm(1.0, "champion")}, n=100))
    result = analyze_experiment(logs, E)
    assert isinstance(result, ExperimentAnalysis)
    assert result.comparisons == ()
    both = analyze_experiment(logged(tmp_path / "2", Scenario(TWO, n=300)), E, champion="challenger")  # fmt: skip
    assert both.champion == "challenger"
    assert both.comparisons[0].arm == "champion"


def test_an_experiment_without_labels_yet_is_inconclusive(tmp_path: Path) -> None:
    s = simulate(Scenario(TWO, n=300, shadow=Shadow("s", "champion", 0.3)))
    s.labels.clear()
    logs = write(open_log_stores(tmp_path), s)
    for metric in ("log_loss", "roc_auc", "accuracy", "reward"):
        result = analyze_experiment(logs, E, metric=metric, guardrails=[Guardrail("brier", 0.01)])
        comparison = result.comparison("challenger")
        assert (comparison.n_arm, comparison.verdict) == (0, "inconclusive")
        assert (comparison.test, comparison.sequential) == (None, None)
        assert comparison.guardrails[0].status == "inconclusive"
        assert result.over_time == []
        assert result.paired == []
        json.dumps(result.to_dict(), allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=400), st.booleans())
def test_latency_figures_are_numpy_percentiles_from_one_partition(
    values: list[float], ties: bool
) -> None:
    x = np.round(np.asarray(values)) if ties else np.asarray(values)
    figures = _latency_figures(x.copy(), 0.05)
    assert [figures.p50, figures.p95, figures.p99] == np.percentile(x, [50, 95, 99]).tolist()
    assert figures.mean == pytest.approx(x.mean())
    low, high = quantile_ranks(len(x), 0.99, 0.025)
    ordered = np.sort(x)
    assert figures.low == (ordered[low - 1] if low >= 1 else -math.inf)
    assert figures.high == (ordered[high - 1] if high <= len(x) else math.inf)
