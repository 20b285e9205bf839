"""Reading a window's prediction records and the labels that answer them: records
split by (arm, model version, shadow), and one latest label per request id (and row)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodml.monitoring._checks import LABELS_SCHEMA
from prodml.storage import QuarantinedFile, read_log

__all__ = ["LabelIndex", "first_record_hour", "groups", "live_arm", "select_group"]


def live_arm(table: pa.Table, model_version: str) -> tuple[str, str, bool]:
    """The (arm, model version, shadow) group of ``model_version``'s live records."""
    for arm, model, shadow, _ in groups(table):
        if model == model_version and not shadow:
            return arm, model, shadow
    return "", model_version, False


def first_record_hour(root: Path) -> datetime | None:
    """The start of the earliest ``date=/hour=`` directory of one endpoint's log."""
    if not root.is_dir():
        return None
    for day_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("date=")):
        hours = sorted(
            p
            for p in day_dir.iterdir()
            if p.is_dir()
            and p.name.startswith("hour=")
            and any(day_dir.glob(f"{p.name}/*.parquet"))
        )
        if not hours:
            continue
        try:
            day = datetime.strptime(day_dir.name[5:], "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(hours=int(hours[0].name[5:]))
        except ValueError:
            continue
    return None


def _text_column(table: pa.Table, name: str, default: str) -> list[str]:
    if name not in table.column_names:
        return [default] * table.num_rows
    return ["" if v is None else str(v) for v in table[name].to_pylist()]


def _shadow_column(table: pa.Table) -> np.ndarray:
    if "shadow" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return np.asarray([bool(v) for v in table["shadow"].to_pylist()], dtype=bool)


def groups(table: pa.Table) -> Iterator[tuple[str, str, bool, pa.Table]]:
    """The window's records per (arm, model version, shadow), in a stable order."""
    arms = np.asarray(_text_column(table, "arm", ""), dtype=object)
    models = np.asarray(_text_column(table, "model_version", ""), dtype=object)
    shadows = _shadow_column(table)
    keys = sorted({(a, m, bool(s)) for a, m, s in zip(arms, models, shadows, strict=True)})
    for arm, model, shadow in keys:
        mask = (arms == arm) & (models == model) & (shadows == shadow)
        yield arm, model, shadow, table.filter(pa.array(mask))


def select_group(table: pa.Table, arm: str, model_version: str, shadow: bool) -> pa.Table:
    for a, m, s, part in groups(table):
        if (a, m, s) == (arm, model_version, shadow):
            return part
    return table.slice(0, 0)


class LabelIndex:
    """The endpoint's labels, read once per pass, latest label per (request id, row):
    an Arrow table ``request_id, row, label, label_time`` (``row`` null: every row of
    the request). Unreadable label files are moved to ``quarantine`` (see
    :func:`~prodml.storage.read_log`)."""

    def __init__(
        self, root: Path, endpoint: str, quarantine: list[QuarantinedFile] | None = None
    ) -> None:
        self._root = root
        self._endpoint = endpoint
        self._quarantine = quarantine
        self._table: pa.Table | None = None
        self._since: datetime | None = None

    def get(self, since: datetime) -> pa.Table:
        if self._table is None or (self._since is not None and since < self._since):
            self._table, self._since = self._read(since), since
        return self._table

    def _read(self, since: datetime) -> pa.Table:
        table = read_log(
            self._root, partition=self._endpoint, start=since, quarantine=self._quarantine
        )
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
                "label": pa.array(_label_values(table["label"]), pa.float64()),
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


def _label_values(column: pa.ChunkedArray) -> np.ndarray:
    values = []
    for v in column.to_pylist():
        if isinstance(v, (bool, int | float)):
            values.append(float(v))
        elif isinstance(v, str) and v.strip().lower() in ("true", "false"):
            values.append(1.0 if v.strip().lower() == "true" else 0.0)
        else:
            try:
                values.append(float(v))
            except (TypeError, ValueError):
                values.append(np.nan)
    return np.asarray(values, dtype=np.float64)
