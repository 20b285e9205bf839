"""The robustness suite: generated edge cases, project cases on disk, and the verdict of
running a model over them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from prodml.core import DTYPES, ConfigError, DefinitionError, SchemaError, is_compatible
from prodml.registry import ColumnSpec, Signature, get_format, infer_signature
from prodml.registry._signature import column_type
from prodml.training._robustness import (
    CaseResult,
    RobustnessCase,
    RobustnessResult,
    add_case,
    generated_cases,
    project_cases,
    run_robustness,
)
from prodml.validation import Profile, profile


def training_frame(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "carrier": pd.Series(rng.choice(["AA", "UA", "DL"], n), dtype=object),
            "distance": rng.normal(1000.0, 300.0, n),
            "hour": rng.integers(5, 23, n),
        }
    )
    y = ((X["carrier"] == "AA") ^ (X["distance"] > 1000.0)).astype(int).to_numpy()
    return X, y


def preprocessor() -> ColumnTransformer:
    """One-hot carriers (None is its own category, unseen ones are ignored); impute and
    scale numbers, so the model copes with nulls."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    return ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["carrier"]),
            ("numeric", numeric, ["distance", "hour"]),
        ]
    )


@pytest.fixture(scope="module")
def trained() -> tuple[Pipeline, Signature, Profile]:
    X, y = training_frame()
    model = Pipeline([("pre", preprocessor()), ("model", LogisticRegression())]).fit(X, y)
    signature = infer_signature(X, get_format("skops").predict(model, X))
    return model, signature, profile(pa.Table.from_pandas(X, preserve_index=False))


class NaNRefusingModel:
    """Scores a clean frame but raises on any null, like many hand-written models."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if X.isna().to_numpy().any():
            raise ValueError("input contains NaN")
        return np.full(len(X), 0.5)


def test_training_robustness_good_model_passes_every_generated_case(
    trained: tuple[Pipeline, Signature, Profile],
) -> None:
    model, signature, reference = trained
    fmt = get_format("skops")
    cases = generated_cases(signature, reference)
    names = [case.name for case in cases]
    assert names == [
        "all_nulls",
        "single_row",
        "typical_rows",
        "strings:carrier",
        "extremes:distance",
        "extremes:hour",
    ]
    result = run_robustness(
        lambda X: fmt.predict(model, signature.check(X)), cases, task="classification"
    )
    assert result.passed, result.detail
    assert result.detail == "6/6 cases passed"
    assert [c.rows for c in result.cases] == [len(case.frame) for case in cases]
    without_profile = run_robustness(
        lambda X: fmt.predict(model, signature.check(X)),
        generated_cases(signature),
        task="classification",
    )
    assert without_profile.passed, without_profile.detail


def test_training_robustness_cases_have_the_signature_columns_and_types() -> None:
    signature = Signature(
        tuple(ColumnSpec(f"c_{dtype}", dtype) for dtype in DTYPES), output_dtype="float64"
    )
    for case in generated_cases(signature, seed=3):
        assert list(case.frame.columns) == signature.columns, case.name
        assert case.source == "generated"
        for spec in signature.inputs:
            kind = column_type(case.frame[spec.name])
            nullable_int = spec.dtype.startswith("int") and case.frame[spec.name].isna().any()
            expected = "float64" if nullable_int else spec.dtype
            assert is_compatible(kind, expected), (case.name, spec.name, kind)
        signature.check(case.frame)
    nulls = generated_cases(signature)[0]
    assert nulls.name == "all_nulls"
    assert nulls.frame.isna().to_numpy().all()
    assert nulls.frame["c_string"].dtype == object
    # as Arrow hands nullable integers to pandas: float64 with NaN
    assert str(nulls.frame["c_int8"].dtype) == "float64"


def test_training_robustness_extremes_follow_the_profile() -> None:
    X = pd.DataFrame({"x": [2.0, 4.0, 6.0], "n": np.array([1, 2, 3], dtype=np.int8)})
    reference = profile(pa.Table.from_pandas(X, preserve_index=False))
    signature = infer_signature(X, np.zeros(3))
    cases = {case.name: case.frame for case in generated_cases(signature, reference)}
    x = cases["extremes:x"]["x"].tolist()
    # min, max, max + 10 * range, min - 10 * range, 0, +-1e12, NaN
    assert x[:7] == [2.0, 6.0, 46.0, -38.0, 0.0, 1e12, -1e12]
    assert math.isnan(x[7])
    n = cases["extremes:n"]
    assert n["n"].dtype == np.int8
    assert n["n"].tolist() == [1, 3, 23, -19, 0, 127, -128]  # clipped into int8
    assert (cases["extremes:n"]["x"] == 4.0).all()  # other columns hold the median
    assert cases["single_row"].to_dict("records") == [{"x": 4.0, "n": 2}]


def test_training_robustness_string_cases_use_unseen_categories() -> None:
    X = pd.DataFrame({"carrier": ["__unseen__", "AA", "AA"]})
    reference = profile(pa.Table.from_pandas(X, preserve_index=False))
    signature = infer_signature(X, np.zeros(3))
    frame = {case.name: case.frame for case in generated_cases(signature, reference)}
    values = frame["strings:carrier"]["carrier"].tolist()
    assert values[0] not in {"__unseen__", "AA"}
    assert "" in values
    assert frame["single_row"]["carrier"].tolist() == ["AA"]
    assert frame["typical_rows"]["carrier"].isin(["__unseen__", "AA"]).all()


def test_training_robustness_typical_rows_depend_only_on_the_seed(
    trained: tuple[Pipeline, Signature, Profile],
) -> None:
    _, signature, reference = trained

    def typical(seed: int) -> pd.DataFrame:
        return generated_cases(signature, reference, seed=seed)[2].frame

    pd.testing.assert_frame_equal(typical(7), typical(7))
    assert not typical(7).equals(typical(8))
    distance = reference.column("distance").quantiles or {}
    within = typical(7)["distance"].between(distance["p05"], distance["p95"])
    assert within.all()


def test_training_robustness_records_the_error_of_a_model_that_raises_on_nan() -> None:
    X = pd.DataFrame({"x": [0.0, 1.0], "c": ["a", "b"]})
    signature = infer_signature(X, np.zeros(2))
    cases = generated_cases(signature)
    result = run_robustness(NaNRefusingModel().predict, cases, task="classification")
    failed = {c.name: c.error for c in result.cases if not c.ok}
    # brute force: exactly the cases holding a null must fail
    expected = {case.name for case in cases if case.frame.isna().to_numpy().any()}
    assert set(failed) == expected == {"all_nulls", "extremes:x"}
    assert set(failed.values()) == {"ValueError: input contains NaN"}
    assert not result.passed
    assert result.detail.startswith(f"{len(cases) - 2}/{len(cases)} cases passed; failed: ")
    assert "extremes:x: ValueError: input contains NaN" in result.detail


def test_training_robustness_classifier_scores_must_lie_in_unit_interval() -> None:
    signature = Signature((ColumnSpec("x", "float64"),), output_dtype="float64")
    cases = generated_cases(signature)
    constant = run_robustness(lambda X: np.full(len(X), 1.5), cases, task="classification")
    assert not any(c.ok for c in constant.cases)
    assert all("outside [0, 1]" in (c.error or "") for c in constant.cases)
    as_regression = run_robustness(lambda X: np.full(len(X), 1.5), cases, task="regression")
    assert as_regression.passed


@pytest.mark.parametrize(
    ("predict", "error"),
    [
        (lambda X: np.zeros(len(X) + 1), "expected"),
        (lambda X: np.array(["late"] * len(X)), "expected numbers"),
        (lambda X: np.full(len(X), np.inf), "non-finite"),
        (lambda X: 0.5, "shape ()"),
    ],
    ids=["wrong-length", "strings", "inf", "scalar"],
)
def test_training_robustness_rejects_malformed_outputs(predict: Any, error: str) -> None:
    signature = Signature((ColumnSpec("x", "float64"),), output_dtype="float64")
    result = run_robustness(predict, generated_cases(signature)[1:2], task="regression")
    assert not result.passed
    assert error in (result.cases[0].error or "")


def test_training_robustness_multi_output_rows_are_accepted() -> None:
    signature = Signature((ColumnSpec("x", "float64"),), output_dtype="float64")
    cases = generated_cases(signature)[1:3]
    result = run_robustness(lambda X: np.full((len(X), 3), 1 / 3), cases, task="classification")
    assert result.passed


def test_training_robustness_project_cases_grow_the_suite(
    tmp_path: Path, trained: tuple[Pipeline, Signature, Profile]
) -> None:
    model, signature, reference = trained
    directory = tmp_path / "robustness"
    assert project_cases(directory, signature) == []
    incident = pd.DataFrame(
        {"hour": [3, 4], "carrier": ["ZZ", None], "distance": [np.nan, 5e6], "note": ["x", "y"]}
    )
    path = add_case(directory, "incident_2013_07", incident)
    assert path == directory / "incident_2013_07.parquet"
    add_case(directory, "no_distance", pd.DataFrame({"hour": [1], "carrier": ["AA"]}))
    found = project_cases(directory, signature)
    assert [case.name for case in found] == [
        "incident_2013_07",
        "no_distance (null-filled: distance)",
    ]
    assert all(case.source == "project" for case in found)
    assert list(found[0].frame.columns) == signature.columns  # reordered, note dropped
    assert found[1].frame["distance"].isna().all()
    suite = generated_cases(signature, reference) + found
    fmt = get_format("skops")
    result = run_robustness(
        lambda X: fmt.predict(model, signature.check(X)), suite, task="classification"
    )
    assert len(result.cases) == 8
    assert result.passed, result.detail


def test_training_robustness_project_case_with_int_nulls_reads_as_arrow_gives_it(
    tmp_path: Path,
) -> None:
    signature = Signature((ColumnSpec("hour", "int64"), ColumnSpec("ok", "bool")), "float64")
    frame = pd.DataFrame(
        {
            "hour": pd.Series([1, None], dtype="Int64"),
            "ok": pd.Series([True, None], dtype="boolean"),
        }
    )
    add_case(tmp_path, "nullable", frame)
    (case,) = project_cases(tmp_path, signature)
    signature.check(case.frame)
    assert str(case.frame["hour"].dtype) == "float64"  # NaN for the null, as in training
    assert case.frame["hour"].isna().tolist() == [False, True]


def test_training_robustness_add_case_checks_names_and_frames(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="robustness case name"):
        add_case(tmp_path, "../escape", pd.DataFrame({"x": [1]}))
    with pytest.raises(SchemaError, match="'mixed'"):
        add_case(tmp_path, "mixed", pd.DataFrame({"x": pd.Series([1, "a"], dtype=object)}))
    when = pd.DataFrame({"t": pd.to_datetime(["2013-07-01 12:00", None], utc=True)})
    add_case(tmp_path, "times", when)
    signature = Signature((ColumnSpec("t", "timestamp"),), "float64")
    (case,) = project_cases(tmp_path, signature)
    pd.testing.assert_series_equal(case.frame["t"], when["t"], check_dtype=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "times.parquet"]


def test_training_robustness_unknown_task_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'ranking'"):
        run_robustness(lambda X: np.zeros(len(X)), [], task="ranking")  # type: ignore[arg-type]


def test_training_robustness_regressor_passes_with_profile() -> None:
    X, _ = training_frame(seed=2)
    y = X["distance"].to_numpy() / 100.0
    model = Pipeline([("pre", preprocessor()), ("model", Ridge())]).fit(X, y)
    signature = infer_signature(X, model.predict(X))
    cases = generated_cases(signature, profile(pa.Table.from_pandas(X, preserve_index=False)))
    fmt = get_format("skops")
    result = run_robustness(lambda X: fmt.predict(model, X), cases, task="regression")
    assert result.passed, result.detail


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=10),
            st.integers(0, 50),
            st.booleans(),
            st.one_of(st.none(), st.text(max_size=20)),
        ),
        max_size=6,
    )
)
def test_training_robustness_result_round_trips(
    rows: list[tuple[str, int, bool, str | None]],
) -> None:
    result = RobustnessResult(tuple(CaseResult(*row) for row in rows))
    assert RobustnessResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert result.passed == all(row[2] for row in rows)


def test_training_robustness_result_from_malformed_dict() -> None:
    with pytest.raises(DefinitionError, match="robustness result"):
        RobustnessResult.from_dict({"cases": [{"name": "x"}]})


def test_training_robustness_case_is_a_plain_record() -> None:
    frame = pd.DataFrame({"x": [1.0]})
    case = RobustnessCase("one", frame, "project")
    assert case.frame is frame
    assert case != RobustnessCase("one", frame.copy(), "project")
