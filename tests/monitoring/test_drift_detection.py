"""Dataset drift on synthetic data with a known truth, at 20k rows and fixed seeds.

No-drift controls are not flagged by the default effect sizes (normed Wasserstein,
Jensen–Shannon); clear injected drift (a 0.5σ shift, a 1.5× scale, 10% outliers at 8σ,
25% of the mass moved off the top category, a new category taking 10%) is; a negligible
0.02σ shift at 200k rows is flagged by KS but not by Wasserstein; Benjamini–Hochberg
keeps 20 KS-tested controls quiet. Then robustness: empty and all-null columns, a
constant reference, NaN and ±inf in the window, unseen categories, a 5-row window, a
column missing from the window, and how the dataset share is computed and weighted.
``benchmarks/drift_detection.py`` measures the same scenarios as rates over many seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from prodml.monitoring import ColumnDrift, DatasetDrift, DriftMethod, DriftReference, score_drift

N = 20_000
OUTLIER_SIGMAS = 8.0

Sampler = Callable[[np.random.Generator, int], np.ndarray]


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.6, rng.normal(-2.0, 0.7, n), rng.normal(3.0, 1.0, n))


_LN = 0.5
#: name -> (sampler, mean, std) of the distribution.
NUMERIC: dict[str, tuple[Sampler, float, float]] = {
    "normal": (lambda rng, n: rng.normal(10.0, 2.0, n), 10.0, 2.0),
    "lognormal": (
        lambda rng, n: rng.lognormal(0.0, _LN, n),
        math.exp(_LN**2 / 2),
        math.sqrt((math.exp(_LN**2) - 1) * math.exp(_LN**2)),
    ),
    "exponential": (lambda rng, n: rng.exponential(1.0, n), 1.0, 1.0),
    "uniform": (lambda rng, n: rng.uniform(0.0, 1.0, n), 0.5, math.sqrt(1 / 12)),
    "poisson": (lambda rng, n: rng.poisson(4.0, n).astype(np.float64), 4.0, 2.0),
    "bimodal": (_bimodal, 0.0, math.sqrt(0.6 * (0.49 + 4.0) + 0.4 * (1.0 + 9.0))),
}
CARDINALITIES = {"cat5": 5, "cat30": 30, "cat200": 200}


def _labels(k: int) -> np.ndarray:
    return np.array([f"c{i:03d}" for i in range(k)] + ["new"], dtype=object)


def _zipf(k: int) -> np.ndarray:
    """Zipf-like shares of ``k`` categories, plus a last, empty "new" category."""
    weights = 1.0 / np.arange(1, k + 1) ** 1.5
    return np.append(weights / weights.sum(), 0.0)


def numeric(
    name: str, rng: np.random.Generator, n: int = N, scenario: str = "control"
) -> np.ndarray:
    sample, mu, sigma = NUMERIC[name]
    if name == "poisson" and scenario == "shift":  # counts stay counts: shift the rate
        return rng.poisson(mu + 0.5 * sigma, n).astype(np.float64)
    if name == "poisson" and scenario == "scale":  # same mean, 1.5² × the variance
        p = 1 / 1.5**2
        return rng.negative_binomial(mu * p / (1 - p), p, n).astype(np.float64)
    x = sample(rng, n)
    if scenario == "shift":
        return x + 0.5 * sigma
    if scenario == "scale":
        return mu + (x - mu) * 1.5
    if scenario == "outliers":
        x[rng.choice(n, size=n // 10, replace=False)] = mu + OUTLIER_SIGMAS * sigma
    return x


def categorical(
    name: str, rng: np.random.Generator, n: int = N, scenario: str = "control"
) -> np.ndarray:
    k = CARDINALITIES[name]
    p = _zipf(k)
    if scenario == "reweight":  # 25% of the total mass off the top category
        others = p[1:-1] / p[1:-1].sum()
        p[0] -= 0.25
        p[1:-1] += 0.25 * others
    elif scenario == "new":
        p = p * 0.9
        p[-1] = 0.1
    return _labels(k)[rng.choice(k + 1, size=n, p=p)]


def column(result: DatasetDrift, name: str) -> ColumnDrift:
    (found,) = [c for c in result.columns if c.column == name]
    return found


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    rng = np.random.default_rng(101)
    frame = pd.DataFrame(
        {name: numeric(name, rng) for name in NUMERIC}
        | {name: categorical(name, rng) for name in CARDINALITIES}
    )
    return DriftReference.fit(frame, numeric=list(NUMERIC), categorical=list(CARDINALITIES))


@pytest.fixture(scope="module")
def controls(reference: DriftReference) -> DatasetDrift:
    rng = np.random.default_rng(202)
    frame = pd.DataFrame(
        {name: numeric(name, rng) for name in NUMERIC}
        | {name: categorical(name, rng) for name in CARDINALITIES}
    )
    return score_drift(reference, frame)


# -- controls and injected drift ------------------------------------------------------


@pytest.mark.parametrize("name", [*NUMERIC, *CARDINALITIES])
def test_a_control_is_not_flagged_by_the_defaults(controls: DatasetDrift, name: str) -> None:
    result = column(controls, name)
    assert result.method == ("wasserstein" if name in NUMERIC else "jensen_shannon")
    assert result.status == "ok", result
    assert result.value is not None
    # well under the 0.1 threshold; a plug-in Jensen–Shannon distance is biased up by
    # about sqrt((K - 1) / 4n) under no drift: ≈ 0.05 for 200 categories at 20k rows
    assert 0.0 <= result.value < (0.05 if name in NUMERIC else 0.075), result
    assert controls.share == 0.0
    assert not controls.drifted


@pytest.mark.parametrize("scenario", ["shift", "scale", "outliers"])
@pytest.mark.parametrize("name", list(NUMERIC))
def test_clear_numeric_drift_is_flagged(
    reference: DriftReference, name: str, scenario: str
) -> None:
    rng = np.random.default_rng([303, list(NUMERIC).index(name), len(scenario)])
    result = column(
        score_drift(reference, pd.DataFrame({name: numeric(name, rng, scenario=scenario)})), name
    )
    assert result.method == "wasserstein"
    assert result.status == "drift", result
    assert result.value is not None
    assert result.value >= 0.2  # at least twice the threshold


@pytest.mark.parametrize("scenario", ["reweight", "new"])
@pytest.mark.parametrize("name", list(CARDINALITIES))
def test_clear_categorical_drift_is_flagged(
    reference: DriftReference, name: str, scenario: str
) -> None:
    rng = np.random.default_rng([404, CARDINALITIES[name], len(scenario)])
    result = column(
        score_drift(reference, pd.DataFrame({name: categorical(name, rng, scenario=scenario)})),
        name,
    )
    assert result.method == "jensen_shannon"
    assert result.status == "drift", result
    assert result.value is not None
    assert result.value >= 0.12


def test_a_negligible_shift_on_large_data_is_flagged_by_ks_not_by_wasserstein() -> None:
    """The point of effect-size defaults: at 200k rows a 0.02σ shift is "significant"
    (KS rejects) but negligible (it moves 0.02 reference std, a fifth of the threshold)."""
    rng = np.random.default_rng(505)
    n = 200_000
    reference = DriftReference.fit(pd.DataFrame({"x": rng.normal(0.0, 1.0, n)}), numeric=["x"])
    current = pd.DataFrame({"x": rng.normal(0.02, 1.0, n)})
    default = column(score_drift(reference, current), "x")
    assert default.method == "wasserstein"
    assert default.status == "ok", default
    assert default.value is not None
    assert 0.01 < default.value < 0.04
    test = column(score_drift(reference, current, methods={"x": DriftMethod("ks")}), "x")
    assert test.status == "drift", test
    assert test.pvalue is not None
    assert test.pvalue < 1e-3


def test_benjamini_hochberg_keeps_twenty_ks_controls_quiet() -> None:
    names = [f"x{i}" for i in range(20)]
    kinds = list(NUMERIC)

    def frame(seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        return pd.DataFrame({c: numeric(kinds[i % len(kinds)], rng) for i, c in enumerate(names)})

    reference = DriftReference.fit(frame(606), numeric=names)
    result = score_drift(reference, frame(607), methods=dict.fromkeys(names, DriftMethod("ks")))
    assert [c.status for c in result.columns].count("drift") <= 1
    for c in result.columns:
        assert c.method == "ks"
        assert c.pvalue is not None
        assert c.adjusted_pvalue is not None
        assert c.pvalue <= c.adjusted_pvalue <= 1.0


# -- robustness -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_reference() -> DriftReference:
    rng = np.random.default_rng(707)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0.0, 1.0, N),
            "y": rng.exponential(1.0, N),
            "c": categorical("cat5", rng),
            "d": categorical("cat30", rng),
        }
    )
    return DriftReference.fit(frame, numeric=["x", "y"], categorical=["c", "d"])


def _window(seed: int, n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(0.0, 1.0, n),
            "y": rng.exponential(1.0, n),
            "c": categorical("cat5", rng, n),
            "d": categorical("cat30", rng, n),
        }
    )


def test_an_all_null_window_column_is_empty_and_the_others_are_scored(
    small_reference: DriftReference,
) -> None:
    window = _window(1)
    window["x"] = np.nan
    window["c"] = pd.Series([None] * N, dtype=object)
    result = score_drift(small_reference, window)
    for name in ("x", "c"):
        empty = column(result, name)
        assert empty.status == "empty", empty
        assert empty.value is None
        assert empty.reason is not None
        assert "window" in empty.reason
        assert empty.rows == N
        assert empty.missing == N
        assert not empty.drifted
    for name in ("y", "d"):
        scored = column(result, name)
        assert scored.status == "ok", scored
        assert scored.value is not None
        assert math.isfinite(scored.value)
    assert result.share == 0.0  # over the two scored columns only


def test_a_constant_reference_column() -> None:
    reference = DriftReference.fit(pd.DataFrame({"k": np.full(N, 5.0)}), numeric=["k"])
    same = column(score_drift(reference, pd.DataFrame({"k": np.full(1000, 5.0)})), "k")
    assert same.status == "ok", same
    assert same.value == 0.0
    moved = column(score_drift(reference, pd.DataFrame({"k": np.full(1000, 5.5)})), "k")
    assert moved.status == "drift", moved  # normed by the 0.001 floor: large and finite
    assert moved.value is not None
    assert math.isfinite(moved.value)
    assert moved.value == pytest.approx(500.0)
    noisy = pd.DataFrame({"k": np.random.default_rng(8).normal(5.0, 1.0, 1000)})
    assert column(score_drift(reference, noisy), "k").status == "drift"
    ks_same = column(
        score_drift(
            reference, pd.DataFrame({"k": np.full(1000, 5.0)}), methods={"k": DriftMethod("ks")}
        ),
        "k",
    )
    assert ks_same.status == "ok", ks_same
    assert ks_same.pvalue == pytest.approx(1.0)


@pytest.mark.parametrize("statistic", ["wasserstein", "ks", "psi"])
def test_nan_and_inf_in_the_window_are_counted_not_scored(
    small_reference: DriftReference, statistic: str
) -> None:
    window = _window(2)
    x = window["x"].to_numpy().copy()
    x[:1000] = np.nan
    x[1000:1200] = np.inf
    x[1200:1300] = -np.inf
    window["x"] = x
    result = score_drift(small_reference, window, methods={"x": DriftMethod(statistic)})
    scored = column(result, "x")
    assert scored.status == "ok", scored
    assert scored.value is not None
    assert math.isfinite(scored.value)
    assert scored.rows == N
    assert scored.missing == 1300  # NaN and ±inf together


@pytest.mark.parametrize("statistic", ["jensen_shannon", "chi_square", "g_test", "psi"])
def test_a_category_absent_from_the_reference_is_a_bin_of_its_own(
    small_reference: DriftReference, statistic: str
) -> None:
    window = _window(3)
    few = window.copy()
    few.loc[:4, "c"] = "never-seen"  # 5 rows of 20k: no drift by an effect size
    many = window.copy()
    many.loc[: N // 5 - 1, "c"] = "never-seen"  # a fifth of the window
    methods = {"c": DriftMethod(statistic)}
    small = column(score_drift(small_reference, few, methods=methods), "c")
    large = column(score_drift(small_reference, many, methods=methods), "c")
    assert small.status in ("ok", "drift"), small
    assert large.status == "drift", large
    assert large.value is not None
    assert math.isfinite(large.value)
    if statistic == "jensen_shannon":
        assert small.status == "ok"


def test_a_five_row_window_is_scored(small_reference: DriftReference) -> None:
    window = _window(4, n=5)
    for methods in (None, {"x": DriftMethod("ks"), "c": DriftMethod("chi_square")}):
        result = score_drift(small_reference, window, methods=methods)
        assert result.rows == 5
        for c in result.columns:
            assert c.status in ("ok", "drift"), c
            assert c.value is not None
            assert math.isfinite(c.value)
            assert c.rows == 5
        assert result.share is not None


def test_a_column_missing_from_the_window_is_an_error_for_it_only(
    small_reference: DriftReference,
) -> None:
    window = _window(5).drop(columns=["y"])
    window["x"] = window["x"] + 1.0  # a 1σ shift: drifted
    result = score_drift(small_reference, window)
    missing = column(result, "y")
    assert missing.status == "error"
    assert missing.reason is not None
    assert "missing" in missing.reason
    assert not missing.drifted
    assert [(c.column, c.status) for c in result.columns] == [
        ("x", "drift"),
        ("y", "error"),
        ("c", "ok"),
        ("d", "ok"),
    ]
    assert result.share == pytest.approx(1 / 3)  # the error does not count


def _mixed() -> tuple[DriftReference, pd.DataFrame]:
    """x and c drifted, y and d not, and an extra all-null column z."""
    rng = np.random.default_rng(9)
    ref = pd.DataFrame(
        {
            "x": rng.normal(0.0, 1.0, N),
            "y": rng.exponential(1.0, N),
            "z": rng.normal(0.0, 1.0, N),
            "c": categorical("cat5", rng),
            "d": categorical("cat30", rng),
        }
    )
    reference = DriftReference.fit(ref, numeric=["x", "y", "z"], categorical=["c", "d"])
    window = _window(6)
    window["x"] = window["x"] + 0.5
    window["c"] = categorical("cat5", rng, scenario="new")
    window["z"] = np.nan
    return reference, window


def test_the_dataset_share_is_the_fraction_of_flagged_scored_columns() -> None:
    reference, window = _mixed()
    result = score_drift(reference, window)
    statuses = {c.column: c.status for c in result.columns}
    assert statuses == {"x": "drift", "y": "ok", "z": "empty", "c": "drift", "d": "ok"}
    scored = [c for c in result.columns if c.status in ("ok", "drift")]
    assert result.share == sum(c.drifted for c in scored) / len(scored) == 0.5
    assert result.drifted  # 0.5 reaches the default dataset_share
    assert not score_drift(reference, window, dataset_share=0.6).drifted
    assert [c.column for c in result.top()] == ["x", "c"]  # largest statistic first


def test_importance_weighting_changes_the_share() -> None:
    reference, window = _mixed()
    heavy_drifted = score_drift(reference, window, importance={"x": 3, "c": 3, "y": 1, "d": 1})
    assert heavy_drifted.share == pytest.approx(6 / 8)
    assert heavy_drifted.drifted
    light_drifted = score_drift(reference, window, importance={"x": 1, "c": 1, "y": 3, "d": 3})
    assert light_drifted.share == pytest.approx(2 / 8)
    assert not light_drifted.drifted
    # columns an importance mapping leaves out weigh nothing; the empty z never counts
    partial = score_drift(reference, window, importance={"x": 1.0, "y": 1.0, "z": 100.0})
    assert partial.share == pytest.approx(0.5)
    assert partial.weights == {"x": 1.0, "y": 1.0, "z": 100.0}
    # all-zero weights fall back to equal weights
    assert score_drift(reference, window, importance={"x": 0.0}).share == pytest.approx(0.5)


@pytest.mark.parametrize("statistic", ["chi_square", "g_test"])
def test_a_declared_but_unused_pandas_category_does_not_break_the_tests(
    statistic: str,
) -> None:
    """A pandas ``category`` column whose dtype declares a value that no row holds (for
    instance after filtering) is profiled with a zero count; two such profiles put an
    all-zero column in the contingency table."""
    rng = np.random.default_rng(10)
    dtype = pd.CategoricalDtype(["a", "b", "c", "unused"])
    ref = pd.DataFrame({"c": pd.Series(rng.choice(["a", "b", "c"], N), dtype=dtype)})
    cur = pd.DataFrame({"c": pd.Series(rng.choice(["a", "b", "c"], N), dtype=dtype)})
    reference = DriftReference.fit(ref, categorical=["c"])
    result = column(score_drift(reference, cur, methods={"c": DriftMethod(statistic)}), "c")
    assert result.status == "ok", result
    assert result.pvalue is not None
    assert result.pvalue > 0.01
