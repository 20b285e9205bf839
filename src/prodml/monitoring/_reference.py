"""The monitoring reference of a model version, fitted once from its training set.

Inputs: the profiles of the model's input features over its whole training set.
Outputs: the profile of the model's scores on the held-out test split (the training rows
would show the model's own fit, not what it does on new data), with the labels there for
the reference performance and a calibration map used to estimate performance before
labels arrive. Stored as one blob in the artifact store, keyed by model version.

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"]})
>>> drift = DriftReference.fit(frame, numeric=["x"], categorical=["c"])
>>> ref = MonitorReference(drift, {"task": "classification", "inputs": ["x", "c"]})
>>> MonitorReference.from_bytes(ref.to_bytes()).meta["inputs"]
['x', 'c']
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from prodml.monitoring._drift import DriftReference

__all__ = ["PREDICTION", "MonitorReference", "column_kinds"]

#: The name under which the model's score is profiled next to the input features.
PREDICTION = "prediction"


@dataclass(frozen=True)
class MonitorReference:
    """Input and prediction profiles plus ``meta``: task, inputs, label, the source
    (training set fingerprint, split), the reference performance and calibration."""

    drift: DriftReference
    meta: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("drift.zip", self.drift.to_bytes())
            archive.writestr("meta.json", json.dumps(self.meta, sort_keys=True))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MonitorReference:
        """The reference :meth:`to_bytes` wrote; ``ValueError`` when ``meta.json`` is not
        an object whose ``inputs`` (if any) is a list of names."""
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            drift = DriftReference.from_bytes(archive.read("drift.zip"))
            meta = json.loads(archive.read("meta.json"))
        if not isinstance(meta, dict):
            raise ValueError(f"meta.json holds a {type(meta).__name__}; expected an object")
        inputs = meta.get("inputs", [])
        if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
            raise ValueError(f"meta.json: inputs is {inputs!r}; expected a list of names")
        return cls(drift, meta)

    @property
    def inputs(self) -> list[str]:
        return list(self.meta.get("inputs", []))


def column_kinds(table: pa.Table | pd.DataFrame, columns: list[str]) -> tuple[list[str], list[str]]:
    """Split ``columns`` into numeric (numbers, booleans, temporal) and categorical ones."""
    numeric: list[str] = []
    categorical: list[str] = []
    for name in columns:
        if isinstance(table, pa.Table):
            kind = table.schema.field(name).type
            is_numeric = (
                pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind)
            )  # fmt: skip
        else:
            dtype = table[name].dtype
            is_numeric = bool(pd.api.types.is_numeric_dtype(dtype)) or bool(
                pd.api.types.is_bool_dtype(dtype)
            )
        (numeric if is_numeric else categorical).append(name)
    return numeric, categorical


def scores_array(values: Any) -> np.ndarray:
    """Model output as a float vector (the positive class's probability for classifiers)."""
    array = np.asarray(values)
    if array.ndim == 2:
        array = array[:, -1]
    return np.asarray(array, dtype=np.float64)
