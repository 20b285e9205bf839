"""Model formats: skops, cloudpickle and MLflow pyfunc round trips, the skops allow-list,
byte-for-byte determinism, format detection and the plugin registry."""

from __future__ import annotations

import builtins
import copy
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from prodml.core import ConfigError, ConflictError, StorageError, TrainingError
from prodml.registry.formats import (
    MODEL_FORMATS,
    ModelFormat,
    detect_format,
    get_format,
    register_format,
)
from prodml.registry.formats._skops import is_allowed

MLFLOW_IMPORT_WARNING = "ignore:.*Any type hint is inferred as AnyType:UserWarning"


class ThresholdModel:
    """A plain Python model that scikit-learn and skops know nothing about."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (X["x"].to_numpy() > self.threshold).astype(np.float64)


class FakeFormat(ModelFormat):
    """A registered third-party format whose library is not installed."""

    name = "fake"
    trusted_only = True
    requires = ("prodml_no_such_module_for_tests",)
    extra = "fake"

    def can_save(self, model: Any) -> bool:
        return False

    def save(self, model: Any) -> bytes:
        return b""

    def load(self, data: bytes) -> Any:
        return None


class NotAFormat:
    pass


def make_frame(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "carrier": rng.choice(["AA", "UA", "DL"], n),
            "distance": rng.normal(1000.0, 300.0, n),
            "hour": rng.integers(5, 23, n),
        }
    )
    y = ((X["carrier"] == "AA") ^ (X["distance"] > 1000.0)).astype(int).to_numpy()
    return X, y


def make_pipeline(final: Any) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["carrier"]),
            ("scale", StandardScaler(), ["distance", "hour"]),
        ]
    )
    X, y = make_frame()
    return Pipeline([("pre", pre), ("model", final)]).fit(X, y)


@pytest.fixture(scope="module")
def hgb_pipeline() -> Pipeline:
    return make_pipeline(HistGradientBoostingClassifier(max_iter=5, random_state=0))


@pytest.fixture
def restore_formats() -> Iterator[None]:
    saved = dict(MODEL_FORMATS)
    try:
        yield
    finally:
        MODEL_FORMATS.clear()
        MODEL_FORMATS.update(saved)


@pytest.fixture(scope="module")
def logistic_pipeline() -> Pipeline:
    return make_pipeline(LogisticRegression())


@pytest.mark.parametrize("fixture", ["hgb_pipeline", "logistic_pipeline"])
def test_registry_skops_round_trip_predicts_identically(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    pipe = request.getfixturevalue(fixture)
    fmt = get_format("skops")
    loaded = fmt.load(fmt.save(pipe))
    X, _ = make_frame(50, seed=1)
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    scores = fmt.predict(loaded, X)
    assert scores.dtype == np.float64
    assert scores.shape == (50,)
    np.testing.assert_array_equal(scores, pipe.predict_proba(X)[:, 1])


def test_registry_skops_bytes_are_deterministic(hgb_pipeline: Pipeline) -> None:
    fmt = get_format("skops")
    first = fmt.save(hgb_pipeline)
    # a deep copy holds the same state in objects at other addresses (other id()s)
    assert fmt.save(copy.deepcopy(hgb_pipeline)) == first
    assert fmt.save(hgb_pipeline) == first
    # skops itself names members by id(): the canonical bytes differ from its raw output
    assert sio.dumps(hgb_pipeline) != first or sio.dumps(copy.deepcopy(hgb_pipeline)) != first


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=6, max_size=30)
)
def test_registry_skops_property_round_trip_and_determinism(values: list[float]) -> None:
    X = np.arange(len(values), dtype=np.float64).reshape(-1, 1)
    model = LinearRegression().fit(X, np.array(values))
    fmt = get_format("skops")
    data = fmt.save(model)
    assert fmt.save(copy.deepcopy(model)) == data
    np.testing.assert_array_equal(fmt.load(data).predict(X), model.predict(X))


def test_registry_skops_refuses_types_outside_allow_list() -> None:
    fmt = get_format("skops")
    holder = FunctionTransformer(kw_args={"model": ThresholdModel(0.5)}).fit(np.zeros((2, 1)))
    data = sio.dumps(holder)
    assert any(name.endswith("ThresholdModel") for name in sio.get_untrusted_types(data=data))
    with pytest.raises(ConfigError, match=r"ThresholdModel.*'cloudpickle' format"):
        fmt.load(data)
    assert not fmt.can_save(holder)
    assert detect_format(holder).name == "cloudpickle"


def test_registry_skops_refuses_functions_even_from_allowed_packages() -> None:
    fmt = get_format("skops")
    evil = FunctionTransformer(func=builtins.eval).fit(np.zeros((2, 1)))
    with pytest.raises(ConfigError, match=r"builtins\.eval"):
        fmt.load(sio.dumps(evil))
    assert not is_allowed("numpy.load")
    assert is_allowed("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
    assert not is_allowed("sklearn.no_such_module.Thing")


def test_registry_skops_safety_verdicts_are_shared_only_by_archives_of_the_same_types() -> None:
    from prodml.registry.formats._skops import canonical_with_types

    fmt = get_format("skops")
    X = np.zeros((4, 1))
    safe = FunctionTransformer(kw_args={"scale": 2.0}).fit(X)
    unsafe = FunctionTransformer(kw_args={"scale": ThresholdModel(0.5)}).fit(X)
    evil = FunctionTransformer(func=builtins.eval).fit(X)
    keys = [canonical_with_types(sio.dumps(m))[1] for m in (safe, unsafe, evil)]
    assert len(set(keys)) == 3  # a foreign class or function changes the key
    retrained = FunctionTransformer(kw_args={"scale": 3.0}).fit(X)
    # Same types, other values: one verdict serves both, whatever the order.
    for model in (safe, unsafe, evil, retrained, unsafe, evil, safe):
        expected_safe = model is safe or model is retrained
        assert (fmt.save_if_safe(model) is not None) is expected_safe
        assert detect_format(model).name == ("skops" if expected_safe else "cloudpickle")


def test_registry_skops_rejects_unreadable_bytes() -> None:
    with pytest.raises(StorageError, match="not a readable skops archive"):
        get_format("skops").load(b"definitely not a zip file")
    with pytest.raises(TrainingError, match="cloudpickle"):
        get_format("skops").save(x for x in range(3))


def test_registry_detect_format(hgb_pipeline: Pipeline) -> None:
    assert detect_format(hgb_pipeline).name == "skops"
    assert detect_format(ThresholdModel(0.3)).name == "cloudpickle"
    assert detect_format({"weights": [1.0]}).name == "cloudpickle"


def test_registry_cloudpickle_round_trip() -> None:
    fmt = get_format("cloudpickle")
    assert fmt.trusted_only
    model = ThresholdModel(0.25)
    loaded = fmt.load(fmt.save(model))
    assert isinstance(loaded, ThresholdModel)
    X = pd.DataFrame({"x": [0.1, 0.3, 0.9]})
    np.testing.assert_array_equal(fmt.predict(loaded, X), [0.0, 1.0, 1.0])
    # a lambda pickles by value, so unlike plain pickle the model may hold one
    scaler = fmt.load(fmt.save(lambda v: v * 3))
    assert scaler(2) == 6
    with pytest.raises(TrainingError, match="generator"):
        fmt.save(x for x in range(3))
    with pytest.raises(StorageError, match="could not be unpickled"):
        fmt.load(pickle.dumps(1)[:-2])


def test_registry_predict_regressor_and_multiclass() -> None:
    fmt = get_format("cloudpickle")
    X = np.arange(6, dtype=np.float64).reshape(-1, 1)
    regressor = LinearRegression().fit(X, 2 * X[:, 0] + 1)
    np.testing.assert_allclose(fmt.predict(regressor, pd.DataFrame(X)), 2 * X[:, 0] + 1)
    two_outputs = LinearRegression().fit(X, np.c_[X[:, 0], -X[:, 0]])
    assert fmt.predict(two_outputs, pd.DataFrame(X)).shape == (6, 2)
    multiclass = LogisticRegression().fit(X, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(
        fmt.predict(multiclass, pd.DataFrame(X)), multiclass.predict(pd.DataFrame(X))
    )


def test_registry_unknown_format_names_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'onnx' is unknown.*'cloudpickle', 'mlflow_pyfunc'"):
        get_format("onnx")


@pytest.mark.usefixtures("restore_formats")
def test_registry_register_format_plugins() -> None:
    register_format("fake", f"{__name__}:FakeFormat")
    register_format("fake", f"{__name__}:FakeFormat")  # same path again: no-op
    with pytest.raises(ConfigError, match=r"pip install 'prodml\[fake\]'"):
        get_format("fake")
    with pytest.raises(ConflictError, match="already registered"):
        register_format("fake", f"{__name__}:NotAFormat")
    with pytest.raises(ConfigError, match=r"expected 'package\.module:ClassName'"):
        register_format("onnx", "no_colon_here")
    register_format("broken", f"{__name__}:NotAFormat")
    with pytest.raises(ConfigError, match="not a subclass of ModelFormat"):
        get_format("broken")
    register_format("missing", "prodml_no_such_module_for_tests:Format")
    with pytest.raises(ConfigError, match="cannot import"):
        get_format("missing")


@pytest.fixture
def mlflow_model_dir(tmp_path: Path) -> tuple[Path, LinearRegression, pd.DataFrame]:
    pytest.importorskip(
        "mlflow", reason="mlflow is an optional extra: pip install 'prodml[mlflow]'"
    )
    import mlflow.sklearn

    X = pd.DataFrame({"a": np.linspace(0.0, 1.0, 20), "b": np.linspace(5.0, -5.0, 20)})
    model = LinearRegression().fit(X, 3 * X["a"] - X["b"])
    path = tmp_path / "mlflow_model"
    mlflow.sklearn.save_model(model, str(path), pip_requirements=["scikit-learn"])
    return path, model, X


@pytest.mark.filterwarnings(MLFLOW_IMPORT_WARNING)
def test_registry_pyfunc_round_trip_matches_mlflow(
    mlflow_model_dir: tuple[Path, LinearRegression, pd.DataFrame],
) -> None:
    import mlflow.pyfunc

    path, model, X = mlflow_model_dir
    fmt = get_format("mlflow_pyfunc")
    assert fmt.trusted_only
    assert fmt.can_save(path)
    assert fmt.can_save(str(path))
    assert detect_format(path).name == "mlflow_pyfunc"
    loaded = fmt.load(fmt.save(path))
    expected = np.asarray(mlflow.pyfunc.load_model(str(path)).predict(X))
    scores = fmt.predict(loaded, X)
    assert scores.shape == (20,)
    np.testing.assert_array_equal(scores, expected)
    np.testing.assert_allclose(scores, model.predict(X))
    extracted = loaded.path
    assert extracted.is_dir()
    loaded.close()
    assert not extracted.exists()


@pytest.mark.filterwarnings(MLFLOW_IMPORT_WARNING)
def test_registry_pyfunc_archive_is_deterministic(
    mlflow_model_dir: tuple[Path, LinearRegression, pd.DataFrame],
) -> None:
    path, _, _ = mlflow_model_dir
    fmt = get_format("mlflow_pyfunc")
    first = fmt.save(path)
    for file in path.rglob("*"):
        os.utime(file, (1_000_000, 1_000_000))
    assert fmt.save(path) == first
    (path / "extra.txt").write_text("changed")
    assert fmt.save(path) != first


def test_registry_pyfunc_refuses_non_model_paths(tmp_path: Path) -> None:
    pytest.importorskip(
        "mlflow", reason="mlflow is an optional extra: pip install 'prodml[mlflow]'"
    )
    fmt = get_format("mlflow_pyfunc")
    assert not fmt.can_save(tmp_path)
    assert not fmt.can_save(LinearRegression())
    with pytest.raises(TrainingError, match="MLmodel"):
        fmt.save(tmp_path)
    with pytest.raises(StorageError, match="not a readable MLflow model archive"):
        fmt.load(b"garbage")
