"""The ModelFormat contract, run over every registered model format: each saves a model it
accepts to bytes, loads it back predicting the same scores, refuses what it cannot hold,
and reports unreadable bytes as a StorageError."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from contractkit import Contract
from prodml.core import StorageError, TrainingError
from prodml.registry.formats import MODEL_FORMATS, ModelFormat, get_format

MLFLOW_IMPORT_WARNING = "ignore:.*Any type hint is inferred as AnyType:UserWarning"
pytestmark = pytest.mark.filterwarnings(MLFLOW_IMPORT_WARNING)

X = pd.DataFrame({"a": np.linspace(0.0, 1.0, 20), "b": np.linspace(5.0, -5.0, 20)})
Y = (X["a"] > 0.5).astype(int).to_numpy()


class ThresholdModel:
    """A plain Python model that scikit-learn and skops know nothing about."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame["a"].to_numpy() > self.threshold).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class Sample:
    """A model a format accepts, and the scores it gives on :data:`X`."""

    model: Any
    scores: np.ndarray


def _skops(tmp_path: Path) -> Sample:
    model = LogisticRegression().fit(X, Y)
    return Sample(model, model.predict_proba(X)[:, 1])


def _cloudpickle(tmp_path: Path) -> Sample:
    model = ThresholdModel(0.25)
    return Sample(model, model.predict(X))


def _mlflow_pyfunc(tmp_path: Path) -> Sample:
    pytest.importorskip(
        "mlflow", reason="mlflow is an optional extra: pip install 'prodml[mlflow]'"
    )
    import mlflow.sklearn

    model = LinearRegression().fit(X, 3 * X["a"] - X["b"])
    path = tmp_path / "mlflow_model"
    mlflow.sklearn.save_model(model, str(path), pip_requirements=["scikit-learn"])
    return Sample(path, model.predict(X))


CONTRACT: Contract[Callable[[Path], Sample]] = Contract(
    MODEL_FORMATS,
    {"cloudpickle": _cloudpickle, "mlflow_pyfunc": _mlflow_pyfunc, "skops": _skops},
)


def test_format_contract_covers_every_registered_format() -> None:
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ModelFormat, Sample]:
    fmt = get_format(request.param)
    assert type(fmt) is MODEL_FORMATS.load(request.param)
    return fmt, CONTRACT.factory(request.param)(tmp_path)


def _close(model: Any) -> None:
    close = getattr(model, "close", None)
    if callable(close):
        close()


def test_format_is_named_as_registered(case: tuple[ModelFormat, Sample]) -> None:
    fmt, _ = case
    assert fmt.name in MODEL_FORMATS
    assert MODEL_FORMATS.load(fmt.name) is type(fmt)
    assert isinstance(fmt.trusted_only, bool)
    assert all(isinstance(module, str) for module in fmt.requires)


def test_round_trip_predicts_the_same_scores(case: tuple[ModelFormat, Sample]) -> None:
    fmt, sample = case
    assert fmt.can_save(sample.model)
    data = fmt.save(sample.model)
    assert isinstance(data, bytes)
    assert data
    assert fmt.save_if_safe(sample.model) is not None
    loaded = fmt.load(data)
    try:
        scores = fmt.predict(loaded, X)
        assert scores.shape == (len(X),)
        np.testing.assert_allclose(scores, sample.scores)
    finally:
        _close(loaded)


def test_what_a_format_cannot_hold_is_refused(case: tuple[ModelFormat, Sample]) -> None:
    fmt, _ = case

    def generator() -> Iterator[int]:
        yield 1

    assert not fmt.can_save(generator())
    assert fmt.save_if_safe(generator()) is None
    with pytest.raises(TrainingError):
        fmt.save(generator())


def test_unreadable_bytes_are_a_storage_error(case: tuple[ModelFormat, Sample]) -> None:
    fmt, _ = case
    with pytest.raises(StorageError):
        fmt.load(b"definitely not a model archive")
