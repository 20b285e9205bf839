"""Training sets: the joined table, persisted as a dataset snapshot named by its
fingerprint, with its profile and the feature versions it was built from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from prodml.core import DatasetNotFoundError, ensure_utc, fingerprint_table
from prodml.features._pit import ViewMatch
from prodml.features._service import FeatureService
from prodml.storage import DatasetRow, MetadataDB, read_table, write_table
from prodml.storage._blob_s3 import S3BlobStore
from prodml.validation import Profile, profile

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DatasetStore", "TrainingSet", "ViewCoverage", "unmatched_views", "view_coverage"]


@dataclass(frozen=True)
class ViewCoverage:
    """How many entity rows of a training set got a value from one feature view:
    ``matched`` counts the rows where at least one of the view's features is not null;
    ``picked`` the rows whose point-in-time join picked a feature row (its values may
    all be null), and ``exact_time`` those of them whose picked row is stamped exactly at
    the entity row's own time — always 0 for a strict view (``inclusive=False``).

    A high :attr:`exact_time_share` means the view most likely holds one row per event,
    stamped at the event's own time: harmless for a measurement taken then, a label leak
    if the row's values include the event itself (the training job's leakage check
    judges it)."""

    rows: int
    matched: int
    picked: int = 0
    exact_time: int = 0

    @property
    def exact_time_share(self) -> float:
        """``exact_time / picked`` (0.0 when no row picked a feature row)."""
        return self.exact_time / self.picked if self.picked else 0.0

    def to_dict(self) -> dict[str, int | float]:
        return {
            "rows": self.rows,
            "matched": self.matched,
            "picked": self.picked,
            "exact_time": self.exact_time,
            "exact_time_share": self.exact_time_share,
        }


def view_coverage(
    table: pa.Table, service: FeatureService, matches: Mapping[str, ViewMatch] | None = None
) -> dict[str, ViewCoverage]:
    """Per feature view of ``service``: the rows of ``table`` that got any of its values,
    and, from the join's ``matches``, the rows that picked a row and the exact-time ties."""
    names: dict[str, list[str]] = {}
    for projection in service.projections:
        names.setdefault(projection.view.name, []).extend(projection.feature_names)
    coverage: dict[str, ViewCoverage] = {}
    for view, columns in names.items():
        some = pc.is_valid(table.column(columns[0]))
        for column in columns[1:]:
            some = pc.or_(some, pc.is_valid(table.column(column)))
        matched = int(pc.sum(pc.cast(some, pa.int64())).as_py() or 0)
        match = (matches or {}).get(view, ViewMatch(0, 0))
        coverage[view] = ViewCoverage(int(table.num_rows), matched, match.picked, match.exact_time)
    return coverage


def unmatched_views(coverage: Mapping[str, ViewCoverage]) -> tuple[str, ...]:
    """One message per view that gave no value to any row (of at least one)."""
    return tuple(
        f"feature view {name!r}: 0 of {c.rows:,} entity rows got a value (every feature of "
        "the view is null); check the join keys' values and types, the timestamps and the ttl"
        for name, c in coverage.items()
        if c.rows and not c.matched
    )


@dataclass(frozen=True)
class TrainingSet:
    """A point-in-time correct training set and its snapshot's metadata."""

    table: pa.Table
    fingerprint: str
    profile: Profile
    path: Path | str  # a local file, or an s3:// URL
    service_name: str
    service_version: str
    feature_versions: dict[str, str]
    timestamp: str
    label: str | None
    start_time: datetime | None
    end_time: datetime | None
    coverage: Mapping[str, ViewCoverage] = field(default_factory=dict)
    """Rows that got a value and exact-time ties, per feature view (known when built,
    empty when loaded)."""

    @property
    def warnings(self) -> tuple[str, ...]:
        """A message per feature view that gave no value to any row."""
        return unmatched_views(self.coverage)

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.table.to_pandas()
        return frame

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def summary(self) -> dict[str, Any]:
        """What scripts and the CLI print: everything but the data."""
        return {
            "fingerprint": self.fingerprint,
            "path": str(self.path),
            "rows": self.num_rows,
            "columns": self.table.column_names,
            "service": self.service_name,
            "service_version": self.service_version,
            "feature_versions": self.feature_versions,
            "timestamp": self.timestamp,
            "label": self.label,
            "start_time": None if self.start_time is None else self.start_time.isoformat(),
            "end_time": None if self.end_time is None else self.end_time.isoformat(),
            "coverage": {name: c.to_dict() for name, c in self.coverage.items()},
            "warnings": list(self.warnings),
        }


class DatasetStore:
    """Snapshots under ``datasets/`` (or in an S3 bucket: ``[features] datasets_path =
    "s3://BUCKET/PREFIX"``) and their rows in the metadata DB. A snapshot is named by
    its fingerprint and written once, never changed."""

    def __init__(
        self, db: MetadataDB, directory: Path | S3BlobStore, now: Callable[[], datetime]
    ) -> None:
        self._db = db
        self._dir = directory
        self._now = now

    def _where(self, name: str) -> Path | str:
        if isinstance(self._dir, S3BlobStore):
            return self._dir.url(name)
        return self._dir / name

    def _write(self, name: str, table: pa.Table) -> None:
        if isinstance(self._dir, S3BlobStore):
            if not self._dir.exists(name):
                out = pa.BufferOutputStream()
                pq.write_table(table, out, compression="zstd")
                self._dir.save_bytes(name, out.getvalue().to_pybytes())
        elif not (self._dir / name).exists():
            write_table(table, self._dir / name)

    def _read(self, name: str) -> pa.Table:
        if isinstance(self._dir, S3BlobStore):
            return pq.read_table(pa.BufferReader(self._dir.load_bytes(name)))
        return read_table(self._dir / name)

    def save(
        self,
        table: pa.Table,
        *,
        service_name: str,
        service_version: str,
        feature_versions: dict[str, str],
        timestamp: str,
        label: str | None,
        coverage: Mapping[str, ViewCoverage] | None = None,
    ) -> TrainingSet:
        """Persist (once per fingerprint) and return the training set."""
        fingerprint = fingerprint_table(table)
        name = f"{fingerprint}.parquet"
        path = self._where(name)
        stats = profile(table)
        start, end = _time_range(table, timestamp)
        with self._db.write() as session:
            if session.get(DatasetRow, fingerprint) is None:
                self._write(name, table)
                session.add(
                    DatasetRow(
                        fingerprint=fingerprint,
                        path=name,
                        row_count=table.num_rows,
                        start_time=start,
                        end_time=end,
                        service_name=service_name,
                        service_version=service_version,
                        timestamp_column=timestamp,
                        label_column=label,
                        feature_versions=dict(feature_versions),
                        profile=orjson.loads(stats.to_json()),
                        created_at=self._now(),
                    )
                )
        return TrainingSet(
            table,
            fingerprint,
            stats,
            path,
            service_name,
            service_version,
            feature_versions,
            timestamp,
            label,
            start,
            end,
            dict(coverage or {}),
        )

    def load(self, fingerprint: str) -> TrainingSet:
        """A stored snapshot by fingerprint (or a unique prefix of ≥ 8 hex digits)."""
        with self._db.session() as session:
            rows = session.scalars(
                select(DatasetRow).where(DatasetRow.fingerprint.startswith(fingerprint))
            ).all()
            if len(rows) != 1 or len(fingerprint) < 8:
                raise DatasetNotFoundError(
                    f"no single training set with fingerprint {fingerprint!r} "
                    f"({len(rows)} match; give at least 8 hex digits)"
                )
            row = rows[0]
            path = self._where(row.path)
            table = self._read(row.path)
            return TrainingSet(
                table,
                row.fingerprint,
                Profile.from_json(_text(row.profile)),
                path,
                row.service_name,
                row.service_version,
                orjson.loads(_text(row.feature_versions)),
                row.timestamp_column,
                row.label_column,
                row.start_time,
                row.end_time,
            )

    def column_dtypes(self, fingerprint: str) -> dict[str, str]:
        """The dtype of every column of a stored snapshot, from its profile in the
        metadata DB (the Parquet file is not read); empty when it is unknown."""
        with self._db.session() as session:
            row = session.get(DatasetRow, fingerprint)
            if row is None:
                return {}
            stats = Profile.from_json(_text(row.profile))
        return {name: column.dtype for name, column in stats.columns.items()}


def _text(value: Any) -> str:
    # Snapshots written by prodml 0.1.0 hold JSON text inside the JSON column.
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _time_range(table: pa.Table, column: str) -> tuple[datetime | None, datetime | None]:
    if table.num_rows == 0:
        return None, None
    bounds = pc.min_max(table.column(column))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return (
        None if low is None else ensure_utc(low),
        None if high is None else ensure_utc(high),
    )
