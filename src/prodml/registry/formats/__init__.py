"""Model formats: how a model becomes bytes and back, and how it predicts — ``skops`` for
scikit-learn, ``cloudpickle`` for any Python object, ``mlflow_pyfunc`` for MLflow model
directories, and any format a user registers by import path.

>>> import numpy as np
>>> from sklearn.linear_model import LinearRegression
>>> model = LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))
>>> fmt = detect_format(model)
>>> fmt.name
'skops'
>>> fmt.load(fmt.save(model)).predict(np.array([[3.0]])).round(6).tolist()
[7.0]
"""

from __future__ import annotations

from prodml.registry.formats._base import (
    MODEL_FORMATS,
    ModelFormat,
    detect_format,
    get_format,
    register_format,
    serialize,
    to_scores,
)

__all__ = [
    "MODEL_FORMATS",
    "ModelFormat",
    "detect_format",
    "get_format",
    "register_format",
    "serialize",
    "to_scores",
]
