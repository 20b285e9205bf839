"""Reading a window's prediction records and the labels that answer them: records
split by (arm, model version, shadow), and one latest label per request id (and row).

Both work on Arrow columns: a column's distinct values are converted once each (a
window holds a handful of arms and versions), never its rows one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.storage import LogStore, QuarantinedFile

__all__ = ["LABELS_SCHEMA", "LabelIndex", "RecordGroups", "label_values"]

#: The latest label per request (and row), as :class:`LabelIndex` hands them to
#: :func:`~prodml.monitoring._checks.label_checks`.
LABELS_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int64()),
        ("label", pa.float64()),
        ("label_time", pa.float64()),
    ]
)

GroupKey = tuple[str, str, bool]


class RecordGroups:
    """A window's records split by (arm, model version, shadow), once: iterate for the
    groups in their stable order (sorted by key), :meth:`select` one of them.

    A missing ``arm`` or ``model_version`` column (or a null) counts as ``""``, a
    missing ``shadow`` column (or a null) as live.

    >>> grouped = RecordGroups(pa.table({
    ...     "arm": ["b", "a", "b", None], "model_version": ["m:2", "m:1", "m:2", "m:1"],
    ...     "shadow": [False, False, True, None], "x": [1, 2, 3, 4]}))
    >>> [(*key, part["x"].to_pylist()) for *key, part in grouped][:3]
    [('', 'm:1', False, [4]), ('a', 'm:1', False, [2]), ('b', 'm:2', False, [1])]
    >>> grouped.select("b", "m:2", True)["x"].to_pylist(), grouped.select("c", "m:2", False).num_rows
    ([3], 0)
    >>> grouped.live_arm("m:2"), grouped.live_arm("m:9")
    (('b', 'm:2', False), ('', 'm:9', False))
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        arms, arm_keys = _codes(table, "arm", str, "")
        models, model_keys = _codes(table, "model_version", str, "")
        shadows, shadow_keys = _codes(table, "shadow", bool, False)
        combined = (arms * len(model_keys) + models) * 2 + np.asarray(shadow_keys)[shadows]
        found, inverse = np.unique(combined, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(found)))])
        parts: dict[GroupKey, np.ndarray] = {}
        for g, code in enumerate(found.tolist()):
            pair, shadow = divmod(code, 2)
            arm, model = divmod(pair, len(model_keys))
            key = (arm_keys[arm], model_keys[model], bool(shadow))
            parts[key] = order[bounds[g] : bounds[g + 1]]
        self._rows = dict(sorted(parts.items()))
        self._parts: dict[GroupKey, pa.Table] = {}

    def __iter__(self) -> Iterator[tuple[str, str, bool, pa.Table]]:
        for key in self._rows:
            yield (*key, self.select(*key))

    def select(self, arm: str, model_version: str, shadow: bool) -> pa.Table:
        """The records of one group (none when the window has no such group)."""
        key = (arm, model_version, bool(shadow))
        part = self._parts.get(key)
        if part is None:
            rows = self._rows.get(key)
            part = self.table.slice(0, 0) if rows is None else self.table.take(pa.array(rows))
            self._parts[key] = part
        return part

    def live_arm(self, model_version: str) -> GroupKey:
        """The (arm, model version, shadow) group of ``model_version``'s live records."""
        for arm, model, shadow in self._rows:
            if model == model_version and not shadow:
                return arm, model, shadow
        return "", model_version, False


def _codes(
    table: pa.Table, name: str, convert: Callable[[Any], Any], default: Any
) -> tuple[np.ndarray, list[Any]]:
    """Per row, the index of its converted value in the returned list of distinct
    values (nulls and a missing column: ``default``)."""
    if name not in table.column_names:
        return np.zeros(table.num_rows, np.int64), [default]
    column = table[name]
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    encoded = column.combine_chunks().dictionary_encode()
    converted = [convert(v) for v in encoded.dictionary.to_pylist()] + [default]
    position = {value: i for i, value in enumerate(dict.fromkeys(converted))}
    index = np.asarray([position[value] for value in converted], np.int64)
    codes = encoded.indices.fill_null(len(converted) - 1).to_numpy(zero_copy_only=False)
    return index[codes.astype(np.int64)], list(position)


class LabelIndex:
    """The endpoint's labels, read once per pass, latest label per (request id, row):
    an Arrow table :data:`LABELS_SCHEMA` (``row`` null: every row of the request) from
    the label log ``log``. Unreadable label files are moved to ``quarantine`` (see
    :meth:`~prodml.storage.LogStore.read`)."""

    def __init__(
        self, log: LogStore, endpoint: str, quarantine: list[QuarantinedFile] | None = None
    ) -> None:
        self._log = log
        self._endpoint = endpoint
        self._quarantine = quarantine
        self._table: pa.Table | None = None
        self._since: datetime | None = None

    def get(self, since: datetime) -> pa.Table:
        if self._table is None or (self._since is not None and since < self._since):
            self._table, self._since = self._read(since), since
        return self._table

    def _read(self, since: datetime) -> pa.Table:
        table = self._log.read(endpoint=self._endpoint, start=since, quarantine=self._quarantine)
        if (
            table.num_rows == 0
            or "request_id" not in table.column_names
            or "label" not in table.column_names
        ):
            return LABELS_SCHEMA.empty_table()
        rows = (
            pc.cast(table["row"], pa.int64())
            if "row" in table.column_names
            else pa.nulls(table.num_rows, pa.int64())
        )
        seconds = pc.cast(pc.cast(table["time"], pa.timestamp("us", tz="UTC")), pa.int64())
        labels = pa.table(
            {
                "request_id": pc.cast(table["request_id"], pa.string()),
                "row": rows,
                "label": label_values(table["label"]),
                "label_time": pc.divide(pc.cast(seconds, pa.float64()), 1e6),
            }
        )
        labels = labels.filter(
            pc.and_(pc.is_valid(labels["request_id"]), pc.is_finite(labels["label"]))
        )
        latest = labels.group_by(["request_id", "row"], use_threads=False).aggregate(
            [("label", "last"), ("label_time", "last")]
        )
        return latest.rename_columns(["request_id", "row", "label", "label_time"]).cast(
            LABELS_SCHEMA
        )


def label_values(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Labels as float64: numbers and booleans as they are, the text ``true``/``false``
    (any case, spaces around) as 1/0, other text parsed as a number; anything else NaN.

    >>> label_values(pa.array([" True", "false", "2.5", "x", None])).to_pylist()
    [1.0, 0.0, 2.5, nan, nan]
    >>> label_values(pa.array([True, None, False])).to_pylist()
    [1.0, nan, 0.0]
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        numbers = pc.cast(column, pa.float64(), safe=False)
        return pc.fill_null(numbers, np.nan)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.utf8_lower(pc.utf8_trim_whitespace(column))
        true, false = pc.equal(text, "true"), pc.equal(text, "false")
        boolean = pc.if_else(true, 1.0, pc.if_else(false, 0.0, pa.scalar(None, pa.float64())))
        try:
            numbers = pc.cast(pc.if_else(pc.or_(true, false), None, text), pa.float64())
        except pa.ArrowInvalid:  # text Arrow cannot read as a number: Python's float() decides
            return _each_distinct(column, _label_value)
        return pc.fill_null(pc.coalesce(boolean, numbers), np.nan)
    return _each_distinct(column, _label_value)


def _each_distinct(column: pa.Array, convert: Callable[[Any], float]) -> pa.Array:
    """``convert`` applied to each distinct value of ``column`` once, spread to its rows."""
    encoded = column.dictionary_encode()
    values = pa.array([convert(v) for v in encoded.dictionary.to_pylist()], pa.float64())
    return pc.fill_null(pc.take(values, encoded.indices), np.nan)


def _label_value(value: Any) -> float:
    """One label as a float (see :func:`label_values`)."""
    if isinstance(value, (bool, int | float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return 1.0 if value.strip().lower() == "true" else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan
