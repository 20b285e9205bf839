"""The data side of a training job: labelled entity rows for a window, the time-based
train/validation/test split (never random: temporal data would leak the future), and
recency sample weights.

>>> import pandas as pd
>>> ts = pd.Series(pd.date_range("2013-01-01", periods=10, freq="D", tz="UTC"))
>>> s = time_split(ts, validation_fraction=0.2, test_fraction=0.2)
>>> s.sizes()
{'train': 6, 'validation': 2, 'test': 2}
>>> str(s.test_start.date()), str(s.validation_start.date())
('2013-01-09', '2013-01-07')
>>> recency_weights(ts[:3], half_life_days=1.0).round(2).tolist()
[0.25, 0.5, 1.0]

A split at a given time (the champion's last fitted row, ``[training] test_split =
"champion"``): the test rows are those at or after it, and the validation rows the
``validation_fraction`` of all rows just before it.

>>> c = split_at(ts, pd.Timestamp("2013-01-08", tz="UTC"), validation_fraction=0.2)
>>> c.sizes(), c.basis
({'train': 5, 'validation': 2, 'test': 3}, 'champion')
>>> split_at(ts, pd.Timestamp("2013-01-20", tz="UTC"), validation_fraction=0.2) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import SchemaError, SourceError, TrainingError, ensure_utc
from prodml.features import read_entity_rows, to_arrow

__all__ = ["TimeSplit", "load_entity_rows", "recency_weights", "split_at", "time_split"]


@dataclass(frozen=True)
class TimeSplit:
    """Row masks of a time split; every test row is later than every validation row,
    and every validation row later than every training row."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    #: ``"fraction"`` (the latest rows by ``test_fraction``) or ``"champion"`` (the rows
    #: after the champion's data); ``note`` says why a champion cut was not used.
    basis: str = "fraction"
    note: str | None = None

    def sizes(self) -> dict[str, int]:
        return {
            "train": int(self.train.sum()),
            "validation": int(self.validation.sum()),
            "test": int(self.test.sum()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            **self.sizes(),
            "basis": self.basis,
            **({} if self.note is None else {"note": self.note}),
        }


def time_split(
    timestamps: pd.Series, *, validation_fraction: float, test_fraction: float
) -> TimeSplit:
    """Split at timestamp boundaries so that about the given fractions of rows (the
    latest ones) form the test and validation sets; rows sharing a timestamp stay
    together."""
    if len(timestamps) == 0:
        raise TrainingError("cannot split an empty training set: no labelled rows in the window")
    values = _sortable(timestamps)
    ordered = np.sort(values)
    n = len(ordered)
    test_start = ordered[min(n - 1, int(np.floor(n * (1 - test_fraction))))]
    valid_at = int(np.floor(n * (1 - test_fraction - validation_fraction)))
    validation_start = ordered[min(n - 1, max(valid_at, 0))]
    test = values >= test_start
    validation = (values >= validation_start) & ~test
    train = ~(test | validation)
    if validation_fraction == 0:
        validation = np.zeros(n, dtype=bool)
        train = ~test
        validation_start = test_start
    split = TimeSplit(
        train,
        validation,
        test,
        _stamp(validation_start, timestamps),
        _stamp(test_start, timestamps),
    )
    sizes = split.sizes()
    if sizes["train"] == 0 or sizes["test"] == 0:
        raise TrainingError(
            f"time split of {n} rows left an empty set ({sizes}); the window holds too few "
            "distinct timestamps — widen the window or lower [training] test_fraction"
        )
    return split


def _sortable(timestamps: pd.Series) -> np.ndarray:
    """The values as NumPy sorts them fast: a time zone's instants as UTC
    ``datetime64`` (pandas gives objects otherwise, some 20× slower to sort)."""
    if isinstance(timestamps.dtype, pd.DatetimeTZDtype):
        timestamps = timestamps.dt.tz_convert("UTC").dt.tz_localize(None)
    values: np.ndarray = timestamps.to_numpy()
    return values


def _stamp(value: Any, timestamps: pd.Series) -> pd.Timestamp:
    """``value`` (from :func:`_sortable`) as a Timestamp in the series' own zone."""
    if isinstance(timestamps.dtype, pd.DatetimeTZDtype):
        return pd.Timestamp(value).tz_localize("UTC").tz_convert(timestamps.dtype.tz)
    return pd.Timestamp(value)


def split_at(
    timestamps: pd.Series, cut: pd.Timestamp, *, validation_fraction: float
) -> TimeSplit | None:
    """Test rows at or after ``cut``, validation the ``validation_fraction`` of all rows
    latest before it, training the rest; None when that leaves no training or no test
    row (the caller falls back to :func:`time_split`)."""
    test = np.asarray(timestamps >= cut, dtype=bool)
    before = timestamps[~test].sort_values()
    n_valid = int(np.floor(len(timestamps) * validation_fraction))
    if not test.any() or len(before) <= n_valid:
        return None
    no_rows = np.zeros(len(timestamps), dtype=bool)
    validation_start = before.iloc[len(before) - n_valid] if n_valid else cut
    validation = ~test & np.asarray(timestamps >= validation_start) if n_valid else no_rows
    train = ~(test | validation)
    return TimeSplit(
        train,
        validation,
        test,
        pd.Timestamp(validation_start),
        pd.Timestamp(timestamps[test].min()),
        basis="champion",
    )


def recency_weights(timestamps: pd.Series, *, half_life_days: float) -> np.ndarray:
    """Weight 1 for the latest row, halving every ``half_life_days`` before it."""
    values = pd.to_datetime(timestamps).to_numpy()
    age_days = (values.max() - values) / np.timedelta64(1, "D")
    weights: np.ndarray = np.power(0.5, age_days.astype("float64") / half_life_days)
    return weights


def load_entity_rows(
    entity_rows: Any,
    *,
    root: Path,
    timestamp: str,
    start: datetime,
    end: datetime,
    owner: str = "trainer",
) -> pa.Table:
    """The labelled rows with ``start <= timestamp < end`` from a function or a Parquet
    (or CSV) path; none is a :class:`TrainingError` naming the window and the rows given."""
    start, end = ensure_utc(start), ensure_utc(end)
    if entity_rows is None:
        raise SchemaError(
            "the trainer declares no entity_rows: give @prodml.trainer(entity_rows=...) a "
            "function (start, end) -> DataFrame or a Parquet path"
        )
    if isinstance(entity_rows, str | Path):
        table = read_entity_rows(
            root / entity_rows,
            timestamp=timestamp,
            what=f"trainer entity_rows {str(entity_rows)!r}:",
        )
    else:
        try:
            result = entity_rows(start, end)
        except Exception as exc:
            raise SourceError(
                f"trainer entity_rows function failed for {start.isoformat()}–{end.isoformat()}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        table = to_arrow(result, what="trainer entity_rows function result")
    if timestamp not in table.column_names:
        raise SchemaError(
            f"trainer entity rows: no timestamp column {timestamp!r}; columns: "
            f"{table.column_names} (name it with @prodml.trainer(timestamp=...))"
        )
    column = table[timestamp]
    if not pa.types.is_timestamp(column.type):
        raise SchemaError(
            f"trainer entity rows column {timestamp!r}: expected a timestamp, got {column.type}"
        )
    if column.type.tz is None:
        table = table.set_column(
            table.column_names.index(timestamp), timestamp, pc.assume_timezone(column, "UTC")
        )
    start_ms = pa.scalar(start, type=pa.timestamp("us", tz="UTC"))
    end_ms = pa.scalar(end, type=pa.timestamp("us", tz="UTC"))
    ts = pc.cast(table[timestamp], pa.timestamp("us", tz="UTC"))
    rows = table.filter(pc.and_(pc.greater_equal(ts, start_ms), pc.less(ts, end_ms)))
    if rows.num_rows == 0:
        origin = (
            f"entity_rows {str(entity_rows)!r}"
            if isinstance(entity_rows, str | Path)
            else "the entity_rows function"
        )
        bounds = pc.min_max(ts)
        held = (
            f"{table.num_rows:,} rows with {timestamp} from {bounds['min'].as_py().isoformat()} "
            f"to {bounds['max'].as_py().isoformat()}"
            if table.num_rows and ts.null_count < len(ts)
            else f"{table.num_rows:,} rows"
        )
        raise TrainingError(
            f"{owner}: no labelled rows with {timestamp} in the window "
            f"[{start.isoformat()}, {end.isoformat()}): {origin} gave {held}; choose a window "
            "that holds labelled rows"
        )
    return rows
