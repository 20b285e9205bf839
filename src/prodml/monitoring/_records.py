"""Reading a window's prediction records and the labels that answer them: records
split by (arm, model version, shadow), and one latest label per request id (and row).

Both work on Arrow columns: a column's distinct values are converted once each (a
window holds a handful of arms and versions), never its rows one by one. Labels sent by
entity keys and event time are matched to their prediction records by a DuckDB join.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.storage import LogStore, QuarantinedFile, entity_column

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
            if rows is None:
                part = self.table.slice(0, 0)
            elif len(rows) == self.table.num_rows:  # the only group: every row, in order
                part = self.table
            else:
                part = self.table.take(pa.array(rows))
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
    :meth:`~prodml.storage.LogStore.read`).

    A label answers prediction records in one of two ways:

    * by ``request_id``: every row of the request, or the one row it names;
    * by entity keys and ``event_time`` (no ``request_id``): the records of the endpoint
      in the prediction log ``predictions`` whose ``entity.<key>`` values equal each of
      the label's keys and whose ``time`` equals its ``event_time`` exactly, to the
      microsecond (the time the server logged the prediction: the label names the
      prediction it answers, not the nearest one). Keys compare as text, a whole number
      written without decimals, so ``7``, ``7.0`` and ``"7"`` are the same key. Without
      ``predictions`` such labels answer nothing.

    Priority, per record: a label naming its row (a request-id label with a ``row``, or
    an entity label, which names the records it answers) beats a label for the whole
    request; among labels of the same kind the latest in log order wins, whichever way
    it was sent. Unreadable prediction files met by the entity join are moved to
    ``prediction_quarantine``.
    """

    def __init__(
        self,
        log: LogStore,
        endpoint: str,
        quarantine: list[QuarantinedFile] | None = None,
        *,
        predictions: LogStore | None = None,
        prediction_quarantine: list[QuarantinedFile] | None = None,
    ) -> None:
        self._log = log
        self._endpoint = endpoint
        self._quarantine = quarantine
        self._predictions = predictions
        self._prediction_quarantine = prediction_quarantine
        self._table: pa.Table | None = None
        self._since: datetime | None = None

    def get(self, since: datetime) -> pa.Table:
        if self._table is None or (self._since is not None and since < self._since):
            self._table, self._since = self._read(since), since
        return self._table

    def _read(self, since: datetime) -> pa.Table:
        table = self._log.read(endpoint=self._endpoint, start=since, quarantine=self._quarantine)
        if table.num_rows == 0 or "label" not in table.column_names:
            return LABELS_SCHEMA.empty_table()
        labels = pa.table(
            {
                "request_id": _column(table, "request_id", pa.string()),
                "row": _column(table, "row", pa.int64()),
                "label": label_values(table["label"]),
                "label_time": _seconds(table["time"]),
            }
        )
        finite = pc.is_finite(labels["label"])
        named = pc.and_(pc.is_valid(labels["request_id"]), finite)
        by_entity = self._entity_labels(table, labels, pc.and_(pc.invert(named), finite))
        if by_entity.num_rows:
            labels = labels.append_column("_seq", pa.array(np.arange(table.num_rows)))
            labels = pa.concat_tables([labels.filter(named), by_entity]).sort_by("_seq")
            labels = labels.drop_columns(["_seq"])
        else:
            labels = labels.filter(named)
        latest = labels.group_by(["request_id", "row"], use_threads=False).aggregate(
            [("label", "last"), ("label_time", "last")]
        )
        return latest.rename_columns(["request_id", "row", "label", "label_time"]).cast(
            LABELS_SCHEMA
        )

    def _entity_labels(self, table: pa.Table, labels: pa.Table, candidates: pa.Array) -> pa.Table:
        """Labels of the label log ``table`` sent by entity keys and event time (among rows
        ``candidates``), matched to the records they answer (:func:`_match_entity_labels`)."""
        if (
            self._predictions is None
            or "entities" not in table.column_names
            or "event_time" not in table.column_names
        ):
            return _ENTITY_MATCHES.empty_table()
        sent = pa.table(
            {
                "_seq": pa.array(np.arange(table.num_rows)),
                "entities": pc.cast(table["entities"], pa.string()),
                "event_time": pc.cast(table["event_time"], _TIMESTAMP),
                "label": labels["label"],
                "label_time": labels["label_time"],
            }
        )
        valid = pc.and_(pc.is_valid(sent["entities"]), pc.is_valid(sent["event_time"]))
        sent = sent.filter(pc.and_(candidates, valid))
        if sent.num_rows == 0:
            return _ENTITY_MATCHES.empty_table()
        return _match_entity_labels(
            sent, self._predictions, self._endpoint, self._prediction_quarantine
        )


#: The labels the entity join matched, one per (label, record row) answered: the
#: columns of :data:`LABELS_SCHEMA` and the label's position in the log.
_ENTITY_MATCHES = pa.schema([*LABELS_SCHEMA, ("_seq", pa.int64())])
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Entity keys the join can name in SQL; other keys never name a logged entity column.
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def _column(table: pa.Table, name: str, kind: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """Column ``name`` of ``table`` cast to ``kind`` (all null when it is missing)."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, kind)
    return pc.cast(table[name], kind)


def _seconds(times: pa.ChunkedArray) -> pa.ChunkedArray:
    """Log times as float seconds since the epoch."""
    micros = pc.cast(pc.cast(times, _TIMESTAMP), pa.int64())
    return pc.divide(pc.cast(micros, pa.float64()), 1e6)


def _match_entity_labels(
    sent: pa.Table,
    predictions: LogStore,
    endpoint: str,
    quarantine: list[QuarantinedFile] | None,
) -> pa.Table:
    """Labels sent by entity keys (``entities``, JSON) and ``event_time`` matched to the
    rows of ``endpoint``'s prediction records they answer (see :class:`LabelIndex`):
    :data:`_ENTITY_MATCHES`, one row per (label, record row). The labels are grouped by
    their set of keys (a handful), and each set is one hash join on time and keys."""
    micros = pc.min_max(pc.cast(sent["event_time"], pa.int64())).as_py()
    first, last = (_EPOCH + timedelta(microseconds=micros[k]) for k in ("min", "max"))
    with duckdb.connect() as con:
        con.register("sent", sent)
        con.execute(
            "CREATE TEMP TABLE l AS SELECT *, list_sort(json_keys(entities)) AS keys "
            "FROM sent WHERE json_valid(entities) AND json_type(entities) = 'OBJECT'"
        )
        key_sets: list[list[str]] = [
            keys
            for (keys,) in con.execute("SELECT DISTINCT keys FROM l").fetchall()
            if keys and all(_KEY.fullmatch(k) for k in keys)
        ]
        if not key_sets:
            return _ENTITY_MATCHES.empty_table()
        columns = ["time", "request_id", "row"]
        columns += sorted({entity_column(k) for keys in key_sets for k in keys})
        records = predictions.read(
            endpoint=endpoint,
            start=first,
            end=last + timedelta(microseconds=1),
            columns=columns,
            quarantine=quarantine,
        )
        con.register("p", records)
        kinds = dict(zip(records.column_names, records.schema.types, strict=True))
        queries = [q for keys in key_sets if (q := _match_sql(keys, kinds)) is not None]
        if not queries:
            return _ENTITY_MATCHES.empty_table()
        matched = con.sql(" UNION ".join(queries)).to_arrow_table()
    return matched.cast(_ENTITY_MATCHES)


def _match_sql(keys: Sequence[str], kinds: dict[str, pa.DataType]) -> str | None:
    """The join of the labels whose keys are exactly ``keys`` (sorted) with the records
    (``kinds``: the records' column types); None when a key's column holds no value."""
    record_keys, label_keys, on = [], [], ['p."time" = l.event_time']
    for i, key in enumerate(keys):
        name = entity_column(key)
        kind = kinds[name]
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_null(kind):
            return None
        column = f'p."{name}"'
        if pa.types.is_floating(kind):
            record_keys.append(f"{_whole(f'CAST({column} AS DOUBLE)')} AS k{i}")
        else:
            record_keys.append(f"CAST({column} AS VARCHAR) AS k{i}")
        path = f"'$.\"{key}\"'"
        number = f"CAST(json_extract(l.entities, {path}) AS DOUBLE)"
        label_keys.append(
            f"CASE WHEN json_type(l.entities, {path}) = 'DOUBLE' THEN {_whole(number)} "
            f"ELSE json_extract_string(l.entities, {path}) END AS k{i}"
        )
        on.append(f"p.k{i} = l.k{i}")
    listed = ", ".join(f"'{key}'" for key in keys)
    return (
        "SELECT DISTINCT p.request_id, p.row_number AS row, l.label, l.label_time, l._seq "
        f"FROM (SELECT l._seq, l.event_time, l.label, l.label_time, {', '.join(label_keys)} "
        f"FROM l WHERE l.keys = [{listed}]) AS l "
        'JOIN (SELECT CAST(p.request_id AS VARCHAR) AS request_id, p."time", '
        'coalesce(CAST(p."row" AS BIGINT), 0) AS row_number, '
        f"{', '.join(record_keys)} FROM p WHERE p.request_id IS NOT NULL) AS p "
        f"ON {' AND '.join(on)}"
    )


def _whole(number: str) -> str:
    """SQL writing the DOUBLE ``number`` as key text: a whole number without decimals."""
    return (
        f"CASE WHEN isfinite({number}) AND {number} = trunc({number}) AND abs({number}) < 1e18 "
        f"THEN CAST(CAST({number} AS BIGINT) AS VARCHAR) ELSE CAST({number} AS VARCHAR) END"
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
