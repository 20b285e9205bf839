"""Compute a :class:`Profile` of an Arrow table, one vectorised pass set per column.

Every statistic comes from ``pyarrow.compute`` or NumPy over whole columns; there is no
Python loop over rows. Strings are counted once with ``value_counts`` (distinct count,
top categories and the category list from one hash pass), and their character classes
come from a byte histogram of the string data buffer.

>>> import pyarrow as pa
>>> p = profile(pa.table({"x": [1.0, 2.0, None, float("nan")], "c": ["a", "b", "a", None]}))
>>> p.row_count, p.columns["x"].count, p.columns["x"].nan_count, p.columns["x"].mean
(4, 3, 1, 1.5)
>>> [(c.value, c.count) for c in p.columns["c"].top_categories]
[('a', 2), ('b', 1)]
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core._types import dtype_name
from prodml.core.errors import SchemaError
from prodml.validation._profile import (
    QUANTILES,
    CategoryCount,
    CharClass,
    ColumnProfile,
    Profile,
)
from prodml.validation._values import iso_instant

__all__ = ["profile"]

_LEVELS = np.array(list(QUANTILES.values()))
_MAX_WORKERS = 4
_PARALLEL_ROWS = 100_000
_ASCII_CLASSES: tuple[tuple[CharClass, slice], ...] = (
    ("digit", slice(48, 58)),
    ("lower", slice(97, 123)),
    ("upper", slice(65, 91)),
)


def profile(
    table: pa.Table | pa.RecordBatch, *, top_k: int = 20, category_limit: int = 100
) -> Profile:
    """Profile every column of ``table``.

    ``top_k`` bounds ``top_categories``; ``categories`` (every distinct value) is kept
    for string columns with at most ``category_limit`` distinct values.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    names = table.column_names
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SchemaError(f"table column names must be unique to be profiled: {duplicates} repeat")
    rows = table.num_rows

    def one(name: str) -> ColumnProfile:
        return _profile_column(table.column(name), rows, top_k, category_limit)

    workers = min(_MAX_WORKERS, os.cpu_count() or 1, len(names))
    if workers <= 1 or rows < _PARALLEL_ROWS:
        return Profile(row_count=rows, columns={name: one(name) for name in names})
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prodml-profile") as pool:
        return Profile(row_count=rows, columns=dict(zip(names, pool.map(one, names), strict=True)))


def _profile_column(
    column: pa.ChunkedArray, rows: int, top_k: int, category_limit: int
) -> ColumnProfile:
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
        column = column.cast(kind)
    nulls = column.null_count
    base: dict[str, Any] = {
        "dtype": dtype_name(column.type),
        "count": rows - nulls,
        "null_count": nulls,
        "null_rate": nulls / rows if rows else 0.0,
    }
    if rows == nulls:
        return ColumnProfile(**base, distinct_count=0)
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        base.update(_numeric(column))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        base.update(_strings(column, top_k, category_limit))
    elif pa.types.is_boolean(kind):
        base.update(_categories(column, top_k, None)[0])
    elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        base.update(_temporal(column))
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        base["distinct_count"] = pc.count_distinct(column).as_py()
        base.update(_lengths(pc.binary_length(column)))
    return ColumnProfile(**base)


def _numeric(column: pa.ChunkedArray) -> dict[str, Any]:
    values = _values(column, np.float32 if pa.types.is_float16(column.type) else None)
    out: dict[str, Any] = {}
    nans = 0
    if values.dtype.kind == "f":
        is_nan = np.isnan(values)
        nans = int(np.count_nonzero(is_nan))
        if nans:
            values = values[~is_nan]
    ordered = np.sort(values)
    finite = ordered
    if ordered.dtype.kind == "f":
        below = int(np.searchsorted(ordered, -np.inf, side="right"))
        above = len(ordered) - int(np.searchsorted(ordered, np.inf, side="left"))
        finite = ordered[below : len(ordered) - above]
        out["nan_count"], out["inf_count"] = nans, below + above
    out["distinct_count"] = _distinct(ordered) + (1 if nans else 0)
    if len(finite):
        out["min"], out["max"] = finite[0].item(), finite[-1].item()
        out["mean"] = float(np.mean(finite, dtype=np.float64))
        if len(finite) > 1:
            out["std"] = float(np.std(finite, dtype=np.float64, ddof=1))
        out["quantiles"] = dict(zip(QUANTILES, _quantiles(finite).tolist(), strict=True))
    return out


def _temporal(column: pa.ChunkedArray) -> dict[str, Any]:
    kind = column.type
    if pa.types.is_date(kind):
        unit, aware, ticks = "D", False, column.cast(pa.date32()).cast(pa.int32())
    else:
        unit, aware, ticks = kind.unit, kind.tz is not None, column.cast(pa.int64())
    ordered = np.sort(_values(ticks, None))
    return {
        "distinct_count": _distinct(ordered),
        "min": iso_instant(int(ordered[0]), unit, aware=aware),
        "max": iso_instant(int(ordered[-1]), unit, aware=aware),
        "quantiles": {
            label: iso_instant(round(level), unit, aware=aware)
            for label, level in zip(QUANTILES, _quantiles(ordered).tolist(), strict=True)
        },
    }


def _values(column: pa.ChunkedArray, dtype: type[np.generic] | None) -> np.ndarray[Any, Any]:
    """The non-null values of a numeric column as one NumPy array."""
    if column.null_count:
        column = column.drop_null()
    values: np.ndarray[Any, Any] = column.to_numpy()
    return values.astype(dtype) if dtype is not None else values


def _distinct(ordered: np.ndarray[Any, Any]) -> int:
    """Number of distinct values in a sorted array without NaN."""
    if not len(ordered):
        return 0
    return 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


def _quantiles(ordered: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``QUANTILES`` of a sorted non-empty array, interpolated exactly as NumPy's
    default ``linear`` method does (without sorting again)."""
    position = _LEVELS * (len(ordered) - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, len(ordered) - 1)
    weight = position - low
    below = ordered[low].astype(np.float64)
    above = ordered[high].astype(np.float64)
    step = above - below
    levels: np.ndarray[Any, Any] = np.where(
        weight >= 0.5, above - step * (1 - weight), below + step * weight
    )
    return levels


def _strings(column: pa.ChunkedArray, top_k: int, category_limit: int) -> dict[str, Any]:
    out, distinct = _categories(column, top_k, category_limit)
    extremes = pc.min_max(distinct)
    out["min"], out["max"] = extremes["min"].as_py(), extremes["max"].as_py()
    out.update(_lengths(pc.utf8_length(distinct)))
    out["char_classes"] = _char_classes(distinct)
    return out


def _categories(
    column: pa.ChunkedArray, top_k: int, category_limit: int | None
) -> tuple[dict[str, Any], pa.Array]:
    """Distinct count, top categories and (when few) every category, from one
    ``value_counts``; also returns the distinct non-null values."""
    counts = pc.value_counts(column)
    if counts.field("values").null_count:
        counts = counts.filter(pc.is_valid(counts.field("values")))
    batch = pa.RecordBatch.from_struct_array(counts)
    keys = [("counts", "descending"), ("values", "ascending")]
    k = min(top_k, len(batch))
    top = batch.take(pc.select_k_unstable(batch, k, sort_keys=keys)) if k else batch.slice(0, 0)
    values = batch.column(0)
    out: dict[str, Any] = {
        "distinct_count": len(batch),
        "top_categories": [
            CategoryCount(value=value, count=count)
            for value, count in zip(
                top.column(0).to_pylist(), top.column(1).to_pylist(), strict=True
            )
        ],
    }
    if category_limit is not None and len(batch) <= category_limit:
        out["categories"] = values.take(pc.sort_indices(values)).to_pylist()
    return out, values


def _lengths(lengths: pa.ChunkedArray) -> dict[str, Any]:
    extremes = pc.min_max(lengths)
    return {"min_length": extremes["min"].as_py(), "max_length": extremes["max"].as_py()}


def _char_classes(values: pa.Array) -> list[CharClass]:
    """Classes present across non-null ``values``, from a histogram of their UTF-8 bytes."""
    seen = np.zeros(256, dtype=bool)
    buffers = values.buffers()
    if len(values) and buffers[2] is not None:
        offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
        offsets = np.frombuffer(buffers[1], dtype=offset_type)
        start, stop = offsets[values.offset], offsets[values.offset + len(values)]
        data = np.frombuffer(buffers[2], dtype=np.uint8)[start:stop]
        seen = np.bincount(data, minlength=256) > 0
    classes: list[CharClass] = []
    for name, span in _ASCII_CLASSES:
        if seen[span].any():
            classes.append(name)
        seen[span] = False
    if seen.any():
        classes.append("other")
    return sorted(classes)
