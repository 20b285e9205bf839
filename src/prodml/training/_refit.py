"""The full refit (``[training] refit = "full"``): after evaluation and the gate, the
training function runs again with the same params and seed on every row of the window
(train, validation and test), and that model is the one registered and served.

Why: a model fitted only on the training part of a time split never learns from the
latest weeks, which are the closest to what it will score; on the flights demo that
cost 2–6 ROC-AUC points in production. The evaluation report, gate and metrics stored
with the version stay those of the evaluated model (it is the only one with unseen rows
to be measured on); the version's evaluation names both artifacts by SHA-256.

The fitting shared by both fits lives here too: :func:`trainer_data` builds the
training function's input for a set of rows, :func:`call_trainer` seeds and calls it,
and :class:`Fitted` is the model as stored: its format, its bytes and the object
reloaded from them (what is evaluated or served is exactly what is stored).
"""

from __future__ import annotations

import hashlib
import io
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from prodml.core import ProdMLError, TrainingError
from prodml.registry import ModelFormat, Run
from prodml.registry.formats import serialize
from prodml.training._calibration import rebase
from prodml.training._capture import captured_output
from prodml.training._split import recency_weights
from prodml.training._trainer import TrainerSpec, TrainingData

__all__ = [
    "Fitted",
    "RefitResult",
    "call_trainer",
    "full_refit",
    "serialized",
    "set_seeds",
    "trainer_data",
]


def set_seeds(seed: int) -> None:
    """Seed ``random``, NumPy and any deep-learning framework already imported."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.random.set_seed(seed)


@dataclass(frozen=True)
class Fitted:
    """A model in its stored form: ``model`` is reloaded from ``artifact``."""

    format: ModelFormat
    artifact: bytes
    model: Any

    @cached_property
    def sha256(self) -> str:
        """The artifact's SHA-256 (the registry's content address for it)."""
        return hashlib.sha256(self.artifact).hexdigest()


def serialized(model: Any, *, owner: str) -> Fitted:
    """``model`` serialised (the registry's format choice) and reloaded from its bytes;
    failure is a :class:`TrainingError` naming ``owner`` (where the model came from)."""
    try:
        fmt, artifact = serialize(model)
        loaded = fmt.load(artifact)
    except ProdMLError:
        raise
    except Exception as exc:
        raise TrainingError(
            f"model returned by {owner} ({type(model).__name__}) could not be serialised and "
            f"reloaded: {type(exc).__name__}: {exc}"
        ) from exc
    return Fitted(fmt, artifact, loaded)


def trainer_data(
    spec: TrainerSpec,
    frame: pd.DataFrame,
    labels: pd.Series,
    rows: np.ndarray,
    validation: np.ndarray | None,
    *,
    inputs: list[str],
    params: Mapping[str, Any],
    seed: int,
    parent: Any | None,
    run: Run,
) -> TrainingData:
    """The training function's input: the ``rows`` mask of ``frame`` to fit on (recency
    weights, when the trainer asks for them, computed over those rows) and the
    ``validation`` mask (``None``: no validation data)."""
    weights = None
    if spec.recency_half_life_days is not None:
        weights = recency_weights(
            frame.loc[rows, spec.timestamp], half_life_days=spec.recency_half_life_days
        )
    X_valid, y_valid = None, None
    if validation is not None and validation.any():
        X_valid = frame.loc[validation, inputs].reset_index(drop=True)
        y_valid = labels[validation].reset_index(drop=True)
    return TrainingData(
        X_train=frame.loc[rows, inputs].reset_index(drop=True),
        y_train=labels[rows].reset_index(drop=True),
        w_train=weights,
        X_valid=X_valid,
        y_valid=y_valid,
        params=dict(params),
        seed=seed,
        features=list(inputs),
        parent=parent,
        run=run,
    )


def call_trainer(
    spec: TrainerSpec, run: Run, data: TrainingData, *, stage: str = "train"
) -> Fitted:
    """Seed, call the training function on ``data`` (what it prints kept as the run's
    ``{stage}.log``), then serialise and reload its model."""
    set_seeds(data.seed)
    where = "" if stage == "train" else f"{stage} on {len(data.X_train):,} rows: "
    output = io.StringIO()
    try:
        with captured_output() as output:
            model = spec(data)
    except ProdMLError:
        raise
    except Exception as exc:
        raise TrainingError(
            f"{where}training function {spec.qualname} raised {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if output.getvalue():
            run.log_text(f"{stage}.log", output.getvalue())
    if model is None:
        raise TrainingError(
            f"{where}training function {spec.qualname} returned None; expected a model"
        )
    return serialized(model, owner=spec.qualname)


@dataclass(frozen=True)
class RefitResult:
    """The refitted model and how it relates to the evaluated one."""

    fitted: Fitted
    rows: int
    seconds: float
    evaluated_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": "full",
            "rows": self.rows,
            "evaluated_sha256": self.evaluated_sha256,
            "sha256": self.fitted.sha256,
            "seconds": round(self.seconds, 3),
        }


def full_refit(
    fit: Callable[[TrainingData], Fitted],
    data: TrainingData,
    X_test: pd.DataFrame,
    *,
    evaluated: Fitted,
    calibrated: Any | None,
    owner: str,
) -> RefitResult:
    """Fit again on ``data`` (every row of the window) with ``fit`` (the training
    function, serialised and reloaded); with ``calibrated`` (the evaluated, calibrated
    wrapper) its calibration mapping is put over the refitted model. The result must
    score ``X_test`` (one score per row), else :class:`TrainingError`."""
    began = time.perf_counter()
    fitted = fit(data)
    if calibrated is not None:
        fitted = serialized(rebase(calibrated, fitted.model), owner=f"the refit of {owner}")
    try:
        scores = fitted.format.predict(fitted.model, X_test)
    except Exception as exc:
        raise TrainingError(
            f"the refit of {owner} on {len(data.X_train):,} rows failed to predict on the "
            f"test split: {type(exc).__name__}: {exc}; expected it to score the rows the "
            "evaluated model scored"
        ) from exc
    if len(scores) != len(X_test):
        raise TrainingError(
            f"the refit of {owner} gave {len(scores):,} predictions for the {len(X_test):,} "
            "test rows; expected one per row"
        )
    return RefitResult(
        fitted=fitted,
        rows=len(data.X_train),
        seconds=time.perf_counter() - began,
        evaluated_sha256=evaluated.sha256,
    )
