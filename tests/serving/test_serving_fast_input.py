"""The array fast path for scikit-learn models: taken only when names, dtypes and parts
allow it and predictions are identical both ways; never for column-selecting pipelines."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodml import Project
from prodml.core import ServingConfig
from prodml.serving._fast_input import (
    array_input_agrees,
    silence_feature_name_warning,
    structurally_eligible,
)
from prodml.serving._metrics import ServingMetrics
from prodml.serving._served import ServedModel
from servingkit import numeric_data, register


def _served(
    tmp_path: Path,
    model: object,
    X: pd.DataFrame,
    *,
    allow: bool,
    config: ServingConfig | None = None,
    format: str = "skops",
) -> ServedModel:
    project = Project.init(tmp_path / "p")
    version = register(project, model, X, format=format)
    loaded = project.registry.load(version.ref)
    project.close()
    served = ServedModel(
        loaded,
        config=config or ServingConfig(),
        executor=ThreadPoolExecutor(1),
        metrics=ServingMetrics(),
        array_inputs=allow,
    )
    served.warm_up()
    return served


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRegression(),
        lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        lambda: RandomForestClassifier(n_estimators=5, random_state=0),
    ],
)
def test_eligible_models_take_arrays_and_answer_the_same(tmp_path: Path, make: object) -> None:
    silence_feature_name_warning()  # as a server process does; pytest restores filters
    X, y = numeric_data(500)
    model = make().fit(X, y)  # type: ignore[operator]
    served = _served(tmp_path, model, X, allow=True)
    assert served.array_input
    rows = X.sample(50, random_state=1).reset_index(drop=True)
    np.testing.assert_array_equal(served._predict_batch(rows), model.predict_proba(rows)[:, 1])
    np.testing.assert_array_equal(served._predict_native(rows), model.predict(rows))
    # a micro-batch of one-row requests is joined as stacked arrays, with the same answers
    # (to the last bits or so: a C-ordered array may sum in another order than the frame)
    joined = served._join([rows.iloc[[i]] for i in range(len(rows))])
    assert isinstance(joined, np.ndarray)
    expected = model.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(served._predict_batch(joined), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(served._predict_native(joined), model.predict(rows))


def test_without_the_silenced_warning_or_permission_the_path_stays_off(tmp_path: Path) -> None:
    X, y = numeric_data(300)
    model = LogisticRegression().fit(X, y)
    assert not _served(tmp_path / "a", model, X, allow=True).array_input  # warning not silenced
    silence_feature_name_warning()
    assert not _served(tmp_path / "b", model, X, allow=False).array_input


def test_column_selecting_or_reordered_or_non_numeric_models_are_ineligible() -> None:
    X, y = numeric_data(200)
    columns = list(X.columns)
    dtypes = ["float64"] * len(columns)
    selecting = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), columns[:5])]), LogisticRegression()
    ).fit(X, y)
    assert not structurally_eligible(selecting, columns, dtypes)
    plain = LogisticRegression().fit(X, y)
    assert structurally_eligible(plain, columns, dtypes)
    assert not structurally_eligible(plain, columns[::-1], dtypes)
    assert not structurally_eligible(plain, columns, ["string", *dtypes[1:]])
    unnamed = LogisticRegression().fit(X.to_numpy(), y)
    assert not structurally_eligible(unnamed, columns, dtypes)


def test_disagreeing_predictions_keep_the_dataframe_path() -> None:
    silence_feature_name_warning()
    frame = pd.DataFrame({"a": [1.0, 2.0]})

    def predict(X: object) -> np.ndarray:
        return np.array([0.0, 1.0]) if isinstance(X, pd.DataFrame) else np.array([1.0, 0.0])

    assert not array_input_agrees(predict, frame)
    assert array_input_agrees(lambda X: np.asarray(X)[:, 0] * 2, frame)


# -- light models are called on the event loop -------------------------------------------
def test_a_light_library_model_is_called_on_the_event_loop(tmp_path: Path) -> None:
    X, y = numeric_data(500)
    model = LogisticRegression().fit(X, y)
    generous = ServingConfig(inline_predict_max_ms=1000.0)  # any LR batch is "light"
    served = _served(tmp_path, model, X, allow=False, config=generous)
    assert served.inline_limit_s == 1.0
    assert served.batcher.inline_limit_s == 1.0
    assert served._native().inline_limit_s == 1.0  # batchers made later inherit it


@pytest.mark.parametrize(
    ("limit_ms", "format", "why"),
    [
        (0.0, "skops", "inline prediction switched off"),
        (1e-6, "skops", "no model predicts 32 rows in a nanosecond"),
        (1000.0, "cloudpickle", "a pickled model may run any code: never on the loop"),
    ],
)
def test_models_stay_in_the_threads(tmp_path: Path, limit_ms: float, format: str, why: str) -> None:
    X, y = numeric_data(500)
    model = LogisticRegression().fit(X, y)
    config = ServingConfig(inline_predict_max_ms=limit_ms)
    served = _served(tmp_path, model, X, allow=False, config=config, format=format)
    assert served.inline_limit_s == 0.0, why
    assert served.batcher.inline_limit_s == 0.0, why
