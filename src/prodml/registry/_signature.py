"""A model's signature: the typed input columns it reads, in order, and its output type
and per-row shape. It is stored with every model version and checked before every
prediction, so a request with a missing or mistyped column fails with a message naming it.

>>> import numpy as np
>>> import pandas as pd
>>> X = pd.DataFrame({"carrier": ["AA", "UA"], "distance": [1.0, 2.5], "hour": [5, 17]})
>>> sig = infer_signature(X, np.array([0.1, 0.9]))
>>> [(c.name, c.dtype) for c in sig.inputs], sig.output_dtype, sig.output_shape
([('carrier', 'string'), ('distance', 'float64'), ('hour', 'int64')], 'float64', ())
>>> list(sig.check(X[["hour", "distance", "carrier"]].assign(extra=1)).columns)
['carrier', 'distance', 'hour']
>>> Signature.from_dict(sig.to_dict()) == sig
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from prodml.core import DTYPES, DefinitionError, SchemaError, dtype_name, is_compatible

__all__ = ["ColumnSpec", "Signature", "column_type", "infer_signature"]


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: its name and its dtype name from :data:`prodml.core.DTYPES`."""

    name: str
    dtype: str


def column_type(series: pd.Series) -> pa.DataType:
    """The Arrow type a pandas column converts to, read from its dtype where possible (no
    conversion of numeric, timestamp or categorical columns; object columns are scanned).

    >>> column_type(pd.Series(pd.to_datetime(["2013-01-01"], utc=True)))
    TimestampType(timestamp[us, tz=UTC])
    >>> column_type(pd.Series([1, None], dtype="Int32")), column_type(pd.Series(["a", None]))
    (DataType(int32), DataType(string))
    """
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return pa.timestamp(dtype.unit, tz=str(dtype.tz))
    if isinstance(dtype, pd.CategoricalDtype):
        if len(dtype.categories) == 0:
            return pa.null()
        return column_type(pd.Series(dtype.categories))
    if isinstance(dtype, pd.StringDtype):
        return pa.string()
    if isinstance(dtype, pd.ArrowDtype):
        return dtype.pyarrow_dtype
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return pa.from_numpy_dtype(dtype)
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if isinstance(numpy_dtype, np.dtype):
        return pa.from_numpy_dtype(numpy_dtype)
    return pa.array(series.to_numpy(dtype=object), from_pandas=True).type


def _arrow_type(X: pd.DataFrame, column: str, *, model: str) -> pa.DataType:
    """The Arrow type of one column of ``X``; raises naming the column when it has none."""
    try:
        return column_type(X[column])
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise SchemaError(
            f"{model}: input column {column!r} holds values of mixed or unsupported types ({exc})"
        ) from exc


def _check_dtype(dtype: Any, *, field: str) -> str:
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise DefinitionError(
            f"signature {field}: dtype {dtype!r} is unknown: expected one of "
            f"{', '.join(sorted(DTYPES))}"
        )
    return dtype


@dataclass(frozen=True)
class Signature:
    """Input columns in order, output dtype name and per-row output shape (``()`` for one
    value per row, ``(k,)`` for ``k`` values per row)."""

    inputs: tuple[ColumnSpec, ...]
    output_dtype: str
    output_shape: tuple[int, ...] = ()

    @property
    def columns(self) -> list[str]:
        """The input column names in signature order."""
        return [spec.name for spec in self.inputs]

    def to_dict(self) -> dict[str, Any]:
        """The signature as JSON-ready data (read it back with :meth:`from_dict`)."""
        return {
            "inputs": [{"name": spec.name, "dtype": spec.dtype} for spec in self.inputs],
            "output": {"dtype": self.output_dtype, "shape": list(self.output_shape)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """The signature written by :meth:`to_dict`; raises :class:`DefinitionError`
        naming the invalid field."""
        try:
            inputs = tuple(
                ColumnSpec(name=str(item["name"]), dtype=_check_dtype(item["dtype"], field="input"))
                for item in data["inputs"]
            )
            output = data["output"]
            dtype = _check_dtype(output["dtype"], field="output")
            shape = tuple(int(size) for size in output["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DefinitionError(
                f"signature data is malformed ({type(exc).__name__}: {exc}): expected "
                "{'inputs': [{'name', 'dtype'}, ...], 'output': {'dtype', 'shape'}}"
            ) from exc
        return cls(inputs=inputs, output_dtype=dtype, output_shape=shape)

    def check(self, X: pd.DataFrame, *, model: str = "model") -> pd.DataFrame:
        """Return X with exactly the input columns in signature order; SchemaError naming
        the model, the column and the expected dtype when a column is missing or has an
        incompatible type (int read as float is fine, and so is float with NaN for an
        integer column whose values are whole numbers). Extra columns are dropped."""
        names = self.columns
        missing = [name for name in names if name not in X.columns]
        if missing:
            wanted = ", ".join(f"{spec.name!r} ({spec.dtype})" for spec in self.inputs)
            raise SchemaError(
                f"{model}: input column {missing[0]!r} is missing: expected "
                f"{self.inputs[names.index(missing[0])].dtype}; the model reads {wanted}"
            )
        duplicated = sorted({name for name in X.columns[X.columns.duplicated()] if name in names})
        if duplicated:
            raise SchemaError(f"{model}: input columns {duplicated} appear more than once")
        for spec in self.inputs:
            actual = _arrow_type(X, spec.name, model=model)
            if not is_compatible(actual, spec.dtype) and not _nullable_int(
                X[spec.name], spec.dtype
            ):
                raise SchemaError(
                    f"{model}: input column {spec.name!r} has type {dtype_name(actual)}: "
                    f"expected {spec.dtype}"
                )
        if list(X.columns) == names:
            return X
        return X.loc[:, names]


def _nullable_int(column: pd.Series, dtype: str) -> bool:
    """An integer column holding nulls reaches pandas (from Arrow) as float64 with NaN:
    accept it when every non-null value is a whole number."""
    if not dtype.startswith("int") or column.dtype.kind != "f":
        return False
    values = column.to_numpy(dtype="float64")
    present = values[~np.isnan(values)]
    return bool(np.all(np.isfinite(present)) and np.all(present == np.round(present)))


def infer_signature(X: pd.DataFrame, y_pred: np.ndarray) -> Signature:
    """The signature of a model that maps ``X`` to ``y_pred``."""
    if len(set(X.columns)) != len(X.columns):
        raise SchemaError(f"input columns {list(X.columns)} must be unique")
    inputs = []
    for column in X.columns:
        if not isinstance(column, str):
            raise SchemaError(f"input column {column!r}: expected a string column name")
        kind = dtype_name(_arrow_type(X, column, model="infer_signature"))
        if kind not in DTYPES:
            raise SchemaError(
                f"input column {column!r} has type {kind}: expected one of "
                f"{', '.join(sorted(DTYPES))} (a column of only nulls has no type)"
            )
        inputs.append(ColumnSpec(column, kind))
    y = np.asarray(y_pred)
    if y.ndim == 0 or y.shape[0] != len(X):
        raise SchemaError(
            f"predictions have shape {y.shape}: expected one row per input row ({len(X)})"
        )
    if y.dtype.kind in "OU":
        output = "string"
    elif y.dtype.kind == "S":
        output = "binary"
    else:
        try:
            output = dtype_name(pa.from_numpy_dtype(y.dtype))
        except pa.ArrowException:
            output = str(y.dtype)
    if output not in DTYPES:
        raise SchemaError(
            f"predictions have dtype {y.dtype}: expected one of {', '.join(sorted(DTYPES))}"
        )
    return Signature(inputs=tuple(inputs), output_dtype=output, output_shape=tuple(y.shape[1:]))
