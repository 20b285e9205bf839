"""Hand scikit-learn models a NumPy array instead of a DataFrame when that provably
changes nothing.

On pandas 3, scikit-learn's input validation of a one-row DataFrame costs ~600 µs of a
~750 µs LogisticRegression call (per-column dtype checks through narwhals); the same
call on the array costs ~150 µs. The array path is taken only for a model whose
``feature_names_in_`` are exactly the signature's columns in order, whose inputs are
all numeric, which holds no column-selecting transformer (``ColumnTransformer``,
``FunctionTransformer``) anywhere inside, and whose predictions on rows of typical
values are identical both ways. scikit-learn then warns that the array has no feature
names; a server process owning its interpreter silences exactly that warning
(:func:`silence_feature_name_warning`), and without it the path stays off.

>>> import numpy as np, pandas as pd, warnings
>>> from sklearn.linear_model import LogisticRegression
>>> X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
>>> model = LogisticRegression().fit(X, [0, 0, 1, 1])
>>> structurally_eligible(model, ["a", "b"], ["float64", "float64"])
True
>>> structurally_eligible(model, ["b", "a"], ["float64", "float64"])
False
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "FEATURE_NAME_WARNING",
    "array_input_agrees",
    "silence_feature_name_warning",
    "structurally_eligible",
]

#: The start of scikit-learn's warning for an array given to a model fitted on names.
FEATURE_NAME_WARNING = r"X does not have valid feature names"
_NUMERIC = ("float", "int", "uint", "bool")
_BLOCKING = frozenset({"ColumnTransformer", "FunctionTransformer", "FeatureUnion"})


def silence_feature_name_warning() -> None:
    """Ignore scikit-learn's array-without-names warning in this process (servers only)."""
    warnings.filterwarnings("ignore", message=FEATURE_NAME_WARNING, category=UserWarning)


def feature_name_warning_silenced() -> bool:
    """Whether :func:`silence_feature_name_warning` is in force."""
    return any(
        action == "ignore" and message is not None and message.pattern == FEATURE_NAME_WARNING
        for action, message, *_ in warnings.filters
    )


def _parts(model: Any) -> list[Any]:
    params = getattr(model, "get_params", None)
    if not callable(params):
        return [model]
    try:
        values = list(params(deep=True).values())
    except Exception:
        return [model]
    return [model, *values]


def structurally_eligible(model: Any, columns: Sequence[str], dtypes: Sequence[str]) -> bool:
    """Names, dtypes and the model's parts allow the array path (see the module)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None or list(names) != list(columns):
        return False
    if not all(dtype.startswith(_NUMERIC) for dtype in dtypes):
        return False
    return not any(type(part).__name__ in _BLOCKING for part in _parts(model))


def array_input_agrees(predict: Callable[[Any], np.ndarray], frame: pd.DataFrame) -> bool:
    """Whether ``predict`` gives identical output on ``frame`` and on its array (with
    the feature-name warning silenced); any error means no."""
    if not feature_name_warning_silenced():
        return False
    try:
        expected = np.asarray(predict(frame))
        got = np.asarray(predict(frame.to_numpy()))
        return expected.shape == got.shape and bool(np.array_equal(expected, got))
    except Exception:
        return False
