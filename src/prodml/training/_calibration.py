"""Probability calibration of a fitted classifier on the validation split.

The fitted model is wrapped, not refitted: scikit-learn's ``CalibratedClassifierCV``
around a ``FrozenEstimator`` fits only the calibrator (isotonic or sigmoid) to the
model's scores of the validation rows, which the model never saw, and its
``predict_proba`` returns calibrated probabilities. The wrapper is a plain scikit-learn
object, so a scikit-learn model stays in the safe ``skops`` format.

After a full refit the refitted model has seen the validation rows, so they cannot
calibrate it: :func:`rebase` keeps the calibration mapping and swaps the base model.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(600, 1))
>>> y = rng.random(600) < 1 / (1 + np.exp(-3 * X[:, 0]))
>>> squashed = LogisticRegression(C=1e-4).fit(X[:300], y[:300])  # scores squashed
>>> model = calibrate(squashed, X[300:450], y[300:450], method="sigmoid", owner="train")
>>> spread = lambda m: float(np.ptp(m.predict_proba(X[450:])[:, 1]))
>>> spread(squashed) < 0.1 < spread(model)
True
>>> refitted = LogisticRegression(C=1e-4).fit(X, y)
>>> rebased = rebase(model, refitted)
>>> slope = lambda m: float(m.calibrated_classifiers_[0].calibrators[0].a_)
>>> slope(rebased) == slope(model), rebased.estimator.estimator is refitted
(True, True)
"""

from __future__ import annotations

import copy
from typing import Any, Literal, get_args

import numpy as np
from sklearn.calibration import (  # type: ignore[import-untyped, unused-ignore]
    CalibratedClassifierCV,
)
from sklearn.frozen import FrozenEstimator  # type: ignore[import-untyped, unused-ignore]

from prodml.core import ConfigError, TrainingError

__all__ = ["CALIBRATION_METHODS", "CalibrationMethod", "calibrate", "check_calibration", "rebase"]

CalibrationMethod = Literal["none", "isotonic", "sigmoid"]
CALIBRATION_METHODS: tuple[str, ...] = get_args(CalibrationMethod)


def check_calibration(method: str, *, task: str, owner: str, source: str) -> None:
    """Refuse an unknown method, or any calibration of a regression model, as a
    :class:`ConfigError` naming ``source`` (the config field or keyword that asked)."""
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"{source} {method!r}: expected one of {', '.join(map(repr, CALIBRATION_METHODS))}"
        )
    if method != "none" and task != "classification":
        raise ConfigError(
            f"{source} {method!r}: calibration applies to classifiers only, and {owner} "
            f"trains a {task} model; expected 'none'"
        )


def calibrate(model: Any, X: Any, y: Any, *, method: str, owner: str) -> Any:
    """``model`` (fitted, left as it is) wrapped with a calibrator fitted on its scores
    of ``X`` (the validation rows) against ``y``."""
    classes = np.unique(np.asarray(y))
    if len(classes) < 2:
        raise TrainingError(
            f"calibration ({method}) of the model from {owner}: the validation split holds "
            f"only the class {classes.tolist()}; expected both classes in its rows — widen "
            "the window or raise [training] validation_fraction"
        )
    wrapper = CalibratedClassifierCV(FrozenEstimator(model), method=method)
    try:
        return wrapper.fit(X, y)
    except Exception as exc:
        raise TrainingError(
            f"calibration ({method}) of the model from {owner} ({type(model).__name__}) "
            f"failed on the validation split: {type(exc).__name__}: {exc}; expected a fitted "
            "classifier with predict_proba or decision_function"
        ) from exc


def rebase(calibrated: Any, model: Any) -> Any:
    """A copy of the fitted ``calibrated`` wrapper whose calibration mapping (fitted on
    another model's validation scores) is applied to ``model``'s scores instead."""
    classes = getattr(model, "classes_", None)
    if classes is not None and not np.array_equal(np.asarray(classes), calibrated.classes_):
        raise TrainingError(
            f"the refitted model's classes {np.asarray(classes).tolist()} differ from the "
            f"calibrated model's {calibrated.classes_.tolist()}; expected the same classes"
        )
    frozen = FrozenEstimator(model)
    out = copy.copy(calibrated)
    out.estimator = frozen
    pairs = []
    for pair in calibrated.calibrated_classifiers_:
        moved = copy.copy(pair)
        moved.estimator = frozen
        moved.calibrators = copy.deepcopy(pair.calibrators)
        pairs.append(moved)
    out.calibrated_classifiers_ = pairs
    return out
