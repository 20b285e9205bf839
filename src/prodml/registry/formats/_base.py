"""Model formats as plugins: how a model object becomes bytes and back, and how it predicts.

Formats are registered as name → ``module:Class`` and imported only when used (the
Metaflow pattern), so an optional library such as MLflow is needed only by projects that
use its format.

A format keeps no state (it turns a model into bytes and back; the artifact store, which
has an in-memory backend, keeps the bytes), so the family has no in-memory stand-in:
``cloudpickle``, which saves any picklable object, is the simplest built-in one.

>>> sorted(MODEL_FORMATS)
['cloudpickle', 'mlflow_pyfunc', 'skops']
>>> get_format("skops").trusted_only, get_format("cloudpickle").trusted_only
(False, True)
>>> get_format("onnx")
Traceback (most recent call last):
...
prodml.core.errors.ConfigError: model format 'onnx' is unknown: expected one of 'cloudpickle', 'mlflow_pyfunc', 'skops'
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from prodml.core import ConfigError, Plugins, check_name

__all__ = [
    "MODEL_FORMATS",
    "ModelFormat",
    "detect_format",
    "get_format",
    "register_format",
    "to_scores",
]


def to_scores(output: Any) -> np.ndarray:
    """Model output as a NumPy array, 1-d when there is one output per row.

    >>> to_scores([[0.5], [1.5]]).tolist()
    [0.5, 1.5]
    >>> to_scores(pd.Series([1, 2])).tolist()
    [1, 2]
    """
    if isinstance(output, pd.DataFrame | pd.Series):
        output = output.to_numpy()
    scores = np.asarray(output)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    return scores


class ModelFormat(ABC):
    """How a model object becomes bytes and back, and how it predicts.

    ``trusted_only`` is True for pickle-like formats whose loading can run arbitrary code:
    the registry loads them only from bytes of the project's own artifact store whose
    SHA-256 matches the recorded one. ``requires`` names the importable modules the format
    needs and ``extra`` the ``prodml[...]`` extra that installs them.
    """

    name: ClassVar[str]
    trusted_only: ClassVar[bool]
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None

    @abstractmethod
    def can_save(self, model: Any) -> bool:
        """Whether :meth:`save` accepts ``model`` and :meth:`load` will read it back."""

    @abstractmethod
    def save(self, model: Any) -> bytes:
        """The model as bytes."""

    @abstractmethod
    def load(self, data: bytes) -> Any:
        """The model saved in ``data``."""

    def save_if_safe(self, model: Any) -> bytes | None:
        """``save(model)`` when this format can hold it safely, else ``None``."""
        return self.save(model) if self.can_save(model) else None

    def predict(self, model: Any, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Scores as a 1-d float array for binary classifiers (probability of the positive
        class, via ``predict_proba[:, 1]`` when the model has ``predict_proba`` and 2
        classes), else ``model.predict(X)`` as a NumPy array (1-d if single output)."""
        predict_proba = getattr(model, "predict_proba", None)
        if callable(predict_proba):
            classes = getattr(model, "classes_", None)
            if classes is None or len(classes) == 2:
                proba = np.asarray(predict_proba(X))
                if proba.ndim == 2 and proba.shape[1] == 2:
                    return proba[:, 1].astype(np.float64)
        return to_scores(model.predict(X))


MODEL_FORMATS: Plugins[ModelFormat] = Plugins(
    "model format",
    ModelFormat,
    {
        "skops": "prodml.registry.formats._skops:SkopsFormat",
        "cloudpickle": "prodml.registry.formats._cloudpickle:CloudpickleFormat",
        "mlflow_pyfunc": "prodml.registry.formats._pyfunc:PyfuncFormat",
    },
)


def get_format(name: str) -> ModelFormat:
    """The format registered under ``name``; raises :class:`ConfigError` naming the known
    formats, or the ``prodml[...]`` extra to install when its library is missing."""
    cls = MODEL_FORMATS.load(name)
    missing = [module for module in cls.requires if importlib.util.find_spec(module) is None]
    if missing:
        install = (
            f"pip install 'prodml[{cls.extra}]'"
            if cls.extra
            else "pip install " + (" ".join(missing))
        )
        raise ConfigError(
            f"model format {name!r} needs {', '.join(missing)}, which is not installed: "
            f"install it with {install}"
        )
    return cls()


def register_format(name: str, import_path: str) -> None:
    """Register a format class at ``import_path`` (``"pkg.module:Class"``) under ``name``.

    Re-registering the same path is a no-op; a different path under a taken name raises
    :class:`ConflictError`. The class is imported only when :func:`get_format` asks for it.
    """
    check_name(name, kind="model format")
    MODEL_FORMATS.register(name, import_path)


def detect_format(model: Any) -> ModelFormat:
    """The format to save ``model`` in: ``mlflow_pyfunc`` for a path to an MLflow model
    directory, ``skops`` for a scikit-learn estimator that skops saves and loads back with
    only allow-listed types, else ``cloudpickle``."""
    return serialize(model)[0]


def serialize(model: Any, format: str | None = None) -> tuple[ModelFormat, bytes]:
    """``model`` as bytes in ``format`` (default: as :func:`detect_format` chooses),
    serialising it once even when the choice needs a trial save."""
    if format is not None:
        fmt = get_format(format)
        return fmt, fmt.save(model)
    if isinstance(model, str | os.PathLike) and (Path(model) / "MLmodel").is_file():
        fmt = get_format("mlflow_pyfunc")
        return fmt, fmt.save(model)
    try:
        skops = get_format("skops")
    except ConfigError:
        skops = None
    if skops is not None:
        data = skops.save_if_safe(model)
        if data is not None:
            return skops, data
    fmt = get_format("cloudpickle")
    return fmt, fmt.save(model)
