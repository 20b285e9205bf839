"""Computes on-demand features over an Arrow table — the one code path used both when
building training sets (after the point-in-time join) and when serving (over a table
made of the request data and the online values)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from prodml.core import DefinitionError, arrow_type
from prodml.features._definitions import OnDemandFeature

__all__ = ["apply_on_demand", "table_columns_as_numpy"]


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
                raise DefinitionError(
                    f"on-demand feature {feature.name!r}: output {field.name!r} cannot be "
                    f"converted to {field.dtype}: {exc}"
                ) from None
            table = table.append_column(field.name, column)
    return table
