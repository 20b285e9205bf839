"""On-demand features: their definition, and the one code path that computes them over
an Arrow table — used both when building training sets (after the point-in-time join)
and when serving (over a table made of the request data and the online values)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from prodml.core import DefinitionError, ProdMLError, arrow_type, check_name
from prodml.features._definitions import Field, no_duplicates, spec_version
from prodml.features._sources import Definition, function_source

__all__ = [
    "ColumnFunction",
    "FeatureFunctionError",
    "OnDemandFeature",
    "apply_on_demand",
    "table_columns_as_numpy",
]


ColumnFunction: TypeAlias = Callable[[Mapping[str, np.ndarray]], Any]


class FeatureFunctionError(DefinitionError):
    """An on-demand feature's function raised. The message names the feature, the
    exception's type and the inputs' dtypes, never the exception's text (it may quote
    input values, which at serving time are a client's); the exception is chained.
    ``input_fault``: a ``TypeError`` or ``ValueError``, which a vectorised function
    raises on values of the wrong kind (a server answers 422; any other, 500)."""

    def __init__(self, message: str, *, feature: str, input_fault: bool) -> None:
        super().__init__(message)
        self.feature = feature
        self.input_fault = input_fault


class OnDemandFeature(Definition):
    """Features computed from request data and other features by a pure, vectorised
    function: it receives a mapping of input name → NumPy array (one element per row,
    timestamps as ``datetime64[us]`` in UTC) and returns an array (one output) or a mapping
    of output name → array. The same function runs for training sets and for serving.

    >>> hour = OnDemandFeature("dep_hour", lambda c: c["sched_dep_time"] // 100,
    ...                        inputs=["sched_dep_time"], dtype="int64")
    >>> hour.output_names
    ('dep_hour',)
    >>> hour.compute({"sched_dep_time": np.array([517, 1830])})["dep_hour"].tolist()
    [5, 18]
    """

    kind = "on_demand_feature"

    def __init__(
        self,
        name: str,
        func: ColumnFunction,
        *,
        inputs: Sequence[str],
        dtype: str | None = None,
        features: Sequence[Field] | None = None,
        description: str = "",
    ) -> None:
        self.name = check_name(name, kind="on-demand feature")
        where = f"on-demand feature {name!r}"
        if not callable(func):
            raise DefinitionError(f"{where}: func must be callable, got {func!r}")
        if (dtype is None) == (features is None):
            raise DefinitionError(f"{where}: give exactly one of dtype= (one output) or features=")
        outputs = [Field(name, dtype)] if dtype is not None else list(features or [])
        if not outputs:
            raise DefinitionError(f"{where}: features must name at least one output Field")
        no_duplicates([f.name for f in outputs], where=f"{where} outputs")
        for output in outputs:
            output.check_dtype(owner=where)
        if not inputs:
            raise DefinitionError(f"{where}: inputs must name at least one column")
        self.inputs: tuple[str, ...] = tuple(check_name(i, kind=f"{where} input") for i in inputs)
        self.func = func
        self.features: tuple[Field, ...] = tuple(outputs)
        self.source_text = function_source(func, owner=where)
        self.description = description

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.output_names

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": list(self.inputs),
            "features": [f.spec() for f in self.features],
            "source": self.source_text,
        }

    @cached_property
    def version(self) -> str:
        return spec_version(self.spec())

    def compute(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the function on input columns and return output name → array."""
        missing = [i for i in self.inputs if i not in columns]
        if missing:
            raise DefinitionError(
                f"on-demand feature {self.name!r}: input(s) {missing} not provided; "
                f"available: {sorted(columns)}"
            )
        try:
            result = self.func(_DeclaredInputs(self, {i: columns[i] for i in self.inputs}))
        except ProdMLError:
            raise
        except Exception as exc:
            kinds = ", ".join(
                f"{i}: {getattr(columns[i], 'dtype', type(columns[i]).__name__)}"
                for i in self.inputs
            )
            raise FeatureFunctionError(
                f"on-demand feature {self.name!r}: its function raised "
                f"{type(exc).__name__} on inputs of dtype {kinds}",
                feature=self.name,
                input_fault=isinstance(exc, TypeError | ValueError),
            ) from exc
        if len(self.features) == 1 and not isinstance(result, Mapping):
            return {self.features[0].name: np.asarray(result)}
        if not isinstance(result, Mapping):
            raise DefinitionError(
                f"on-demand feature {self.name!r}: func must return a mapping of "
                f"{list(self.output_names)} → array, got {type(result).__name__}"
            )
        absent = [n for n in self.output_names if n not in result]
        if absent:
            raise DefinitionError(
                f"on-demand feature {self.name!r}: func did not return output(s) {absent}"
            )
        return {n: np.asarray(result[n]) for n in self.output_names}

    def __repr__(self) -> str:
        return f"OnDemandFeature({self.name!r}, inputs={list(self.inputs)})"


class _DeclaredInputs(dict[str, np.ndarray]):
    """The columns an on-demand function may read: reading any other is a
    :class:`DefinitionError` naming the feature, the column and the declared inputs."""

    def __init__(self, feature: OnDemandFeature, columns: Mapping[str, np.ndarray]) -> None:
        super().__init__(columns)
        self._feature = feature

    def __missing__(self, key: str) -> np.ndarray:
        raise DefinitionError(
            f"on-demand feature {self._feature.name!r}: its function reads input {key!r}, "
            f"which it does not declare; declared inputs: {list(self._feature.inputs)} — "
            f"add {key!r} to inputs="
        )


def table_columns_as_numpy(table: pa.Table, names: Sequence[str]) -> dict[str, np.ndarray]:
    """NumPy views of the named columns: timestamps as ``datetime64`` (UTC), integers with
    nulls as floats with NaN, strings as object arrays with ``None``."""
    return {n: table.column(n).to_numpy() for n in names}


def apply_on_demand(table: pa.Table, features: Sequence[OnDemandFeature]) -> pa.Table:
    """Append each on-demand feature's outputs to ``table``, in order; later features may
    use earlier ones' outputs as inputs."""
    for feature in features:
        missing = [i for i in feature.inputs if i not in table.column_names]
        if missing:
            raise DefinitionError(
                f"on-demand feature {feature.name!r}: input column(s) {missing} are neither "
                f"request/entity columns nor features; available: {table.column_names}"
            )
        outputs = feature.compute(table_columns_as_numpy(table, feature.inputs))
        for field in feature.features:
            values = outputs[field.name]
            if values.shape != (table.num_rows,):
                raise DefinitionError(
                    f"on-demand feature {feature.name!r}: output {field.name!r} has shape "
                    f"{values.shape}, expected ({table.num_rows},) — one value per row"
                )
            try:
                column = pa.array(values, from_pandas=True).cast(arrow_type(field.dtype))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                # the Arrow message quotes the value (a client's, when serving): not repeated
                raise FeatureFunctionError(
                    f"on-demand feature {feature.name!r}: output {field.name!r} (of dtype "
                    f"{values.dtype}) cannot be converted to {field.dtype} "
                    f"({type(exc).__name__}): a value out of range or of another kind",
                    feature=feature.name,
                    input_fault=True,
                ) from exc
            table = table.append_column(field.name, column)
    return table
