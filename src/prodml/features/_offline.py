"""The offline store: reads feature sources with DuckDB, checks them against their
views' declared schema, and runs point-in-time joins."""

from __future__ import annotations

import fnmatch
import inspect
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs as pafs

from prodml.core import (
    OfflineStoreConfig,
    SchemaError,
    SourceError,
    TimestampError,
    arrow_type,
    dtype_name,
    is_compatible,
)
from prodml.features._definitions import FeatureView
from prodml.features._pit import JoinView, MatchedJoin, point_in_time_join_matched
from prodml.features._service import FeatureService
from prodml.features._sources import ParquetSource, PythonSource, SqlSource
from prodml.storage._blob_s3 import S3BlobStore

__all__ = ["OfflineStore", "check_unique_columns", "to_arrow"]


def to_arrow(data: pa.Table | pd.DataFrame, *, what: str) -> pa.Table:
    """Accept an Arrow table or a pandas DataFrame (index dropped); a column name that
    appears twice is a :class:`SchemaError` (which of the two is meant cannot be told)."""
    if isinstance(data, pa.Table):
        check_unique_columns(data.column_names, what=what)
        return data
    if isinstance(data, pd.DataFrame):
        check_unique_columns([str(c) for c in data.columns], what=what)
        try:
            with warnings.catch_warnings():
                # pyarrow reads tz-aware columns through Series.values, which pandas 3.1
                # deprecates; the conversion itself is correct.
                warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
                return pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SchemaError(f"{what}: cannot convert the DataFrame to Arrow: {exc}") from None
    raise SchemaError(
        f"{what}: expected a pandas DataFrame or a pyarrow Table, got {type(data).__name__}"
    )


def check_unique_columns(names: Sequence[str], *, what: str) -> None:
    """Raise :class:`SchemaError` naming the column names that appear more than once.

    >>> check_unique_columns(["a", "b", "a"], what="entity rows")
    Traceback (most recent call last):
    ...
    prodml.core.errors.SchemaError: entity rows: column name(s) ['a'] appear more than once; expected unique column names
    """
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise SchemaError(
            f"{what}: column name(s) {repeated} appear more than once; expected unique column names"
        )


def _s3_parquet(url: str, where: str) -> ds.Dataset:
    """The Parquet objects at ``url`` (one object, every ``.parquet`` under a prefix, or
    a glob of their names) as a dataset DuckDB scans with projection and filter
    pushdown; the endpoint, region and credentials come from the environment."""
    store = S3BlobStore.from_url(url, what=f"{where}: Parquet source")
    path = f"{store.bucket}/{store.prefix}".rstrip("/")
    try:
        if any(c in path for c in "*?["):
            base = path[: min(path.index(c) for c in "*?[" if c in path)].rsplit("/", 1)[0]
            infos = store.fs.get_file_info(pafs.FileSelector(base, recursive=True))
            files = sorted(i.path for i in infos
                           if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, path))  # fmt: skip
        else:
            info = store.fs.get_file_info(path)
            if info.type == pafs.FileType.File:
                files = [path]
            else:
                infos = store.fs.get_file_info(
                    pafs.FileSelector(path, recursive=True, allow_not_found=True)
                )
                files = sorted(i.path for i in infos
                               if i.type == pafs.FileType.File and i.path.endswith(".parquet"))  # fmt: skip
    except OSError as exc:
        raise SourceError(f"{where}: Parquet source {url!r} cannot be listed: {exc}") from None
    if not files:
        raise SourceError(f"{where}: Parquet source {url!r} does not exist (no Parquet object)")
    return ds.dataset(files, filesystem=store.fs, format="parquet")


class OfflineStore:
    """DuckDB over the project's sources; one connection per operation."""

    def __init__(self, config: OfflineStoreConfig, root: Path) -> None:
        self._config = config
        self._root = root

    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        root = str(self._root).replace("'", "''")
        con.execute(f"SET file_search_path = '{root}'")
        if self._config.threads is not None:
            con.execute(f"SET threads = {int(self._config.threads)}")
        if self._config.memory_limit is not None:
            limit = self._config.memory_limit.replace("'", "''")
            con.execute(f"SET memory_limit = '{limit}'")
        return con

    def register_source(self, con: duckdb.DuckDBPyConnection, view: FeatureView) -> str:
        """Make the view's rows available as a relation and check its schema; return the
        relation name."""
        relation = f"__src_{view.name}"
        source = view.source
        where = f"feature view {view.name!r}"
        try:
            if isinstance(source, ParquetSource) and source.path.startswith("s3://"):
                con.register(relation, _s3_parquet(source.path, where))
            elif isinstance(source, ParquetSource):
                path = self._resolve(source.path)
                if path.is_dir():
                    pattern = str(path / "**" / "*.parquet")
                elif any(c in source.path for c in "*?[") or path.exists():
                    pattern = str(path)
                else:
                    raise SourceError(
                        f"{where}: Parquet source {source.path!r} does not exist ({path})"
                    )
                literal = pattern.replace("'", "''")
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW \"{relation}\" AS SELECT * FROM read_parquet('{literal}')"
                )
            elif isinstance(source, SqlSource):
                con.execute(f'CREATE OR REPLACE TEMP VIEW "{relation}" AS {source.query}')
            else:
                con.register(relation, self._python_rows(view, source))
        except duckdb.Error as exc:
            raise SourceError(f"{where}: reading its source failed: {exc}") from None
        self._check_schema(con, view, relation)
        return relation

    def check_source(self, view: FeatureView) -> bool:
        """Check the view's columns against its source's schema, raising as a build would
        (:class:`SchemaError`, :class:`TimestampError`); False, without a check, when the
        source is a Python function (not run just to be checked) or cannot be read now."""
        if isinstance(view.source, PythonSource):
            return False
        con = self.connect()
        try:
            self.register_source(con, view)
        except SourceError:
            return False
        finally:
            con.close()
        return True

    def join(
        self,
        entity_rows: pa.Table,
        service: FeatureService,
        *,
        timestamp: str,
        created_time_guard: bool,
    ) -> MatchedJoin:
        """Entity rows' own columns, then one column per view feature (declared types),
        with each view's matches (see :func:`point_in_time_join_matched`)."""
        check_entity_rows(entity_rows, service, timestamp=timestamp)
        con = self.connect()
        try:
            views: list[JoinView] = []
            for projection in service.projections:
                view = projection.view
                relation = self.register_source(con, view)
                views.append(
                    JoinView(
                        name=view.name,
                        relation=f'"{relation}"',
                        join_keys=tuple((k, k) for k in view.join_keys),
                        event_time=view.event_time,
                        created_time=view.created_time,
                        ttl=view.ttl,
                        features=tuple((n, n) for n in projection.feature_names),
                        inclusive=view.inclusive,
                    )
                )
            result = point_in_time_join_matched(
                con, entity_rows, timestamp, views, created_time_guard=created_time_guard
            )
            features = result.table
            for projection, joined in zip(service.projections, views, strict=True):
                if all(
                    features.column(n).null_count == features.num_rows
                    for n in projection.feature_names
                ):
                    self._check_not_empty(con, projection.view, joined.relation)
        finally:
            con.close()
        table = entity_rows
        for projection in service.projections:
            for field in projection.features:
                column = features.column(field.name).cast(arrow_type(field.dtype))
                table = table.append_column(field.name, column)
        return MatchedJoin(table, result.matches)

    @staticmethod
    def _check_not_empty(con: duckdb.DuckDBPyConnection, view: FeatureView, relation: str) -> None:
        """Raise when a view's source has no rows (asked only when no entity row matched)."""
        (count,) = con.sql(f"SELECT count(*) FROM {relation}").fetchall()[0]
        if not count:
            raise SourceError(
                f"feature view {view.name!r}: its source {view.source!r} has no rows; "
                "expected feature rows to join (is the file, directory or query the right one?)"
            )

    def _resolve(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self._root / candidate

    def _python_rows(self, view: FeatureView, source: PythonSource) -> pa.Table:
        where = f"feature view {view.name!r}"
        try:
            takes_root = len(inspect.signature(source.func).parameters) >= 1
            result = source.func(self._root) if takes_root else source.func()
        except Exception as exc:
            raise SourceError(
                f"{where}: PythonSource function raised {type(exc).__name__}: {exc}"
            ) from exc
        return to_arrow(result, what=f"{where} PythonSource result")

    def _check_schema(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, relation: str
    ) -> None:
        """Raise unless the relation has the view's columns with compatible types."""
        schema = con.sql(f'SELECT * FROM "{relation}" LIMIT 0').to_arrow_table().schema
        where = f"feature view {view.name!r}"
        available = schema.names
        required = [
            *view.join_keys,
            view.event_time,
            *([view.created_time] if view.created_time else []),
        ]
        for column in [*required, *view.feature_names]:
            if column not in available:
                raise SchemaError(
                    f"{where}: source has no column {column!r} (declared by the view); "
                    f"source columns: {available}"
                )
        for column in [view.event_time, *([view.created_time] if view.created_time else [])]:
            kind = schema.field(column).type
            if not pa.types.is_timestamp(kind):
                raise TimestampError(
                    f"{where}: column {column!r} has type {kind}; expected a timestamp"
                )
        for field in view.features:
            kind = schema.field(field.name).type
            if not is_compatible(kind, field.dtype):
                raise SchemaError(
                    f"{where}: column {field.name!r} has type {dtype_name(kind)}; "
                    f"expected {field.dtype} as declared"
                )


def check_entity_rows(entity_rows: pa.Table, service: FeatureService, *, timestamp: str) -> None:
    """Raise naming the column when entity rows cannot be joined to the service."""
    where = f"entity rows for feature service {service.name!r}"
    check_unique_columns(entity_rows.column_names, what=where)
    if timestamp not in entity_rows.column_names:
        raise TimestampError(
            f"{where}: no timestamp column {timestamp!r}; columns: {entity_rows.column_names} "
            "(name the entity rows' time column with timestamp=, on the command line --timestamp)"
        )
    kind = entity_rows.schema.field(timestamp).type
    if not pa.types.is_timestamp(kind):
        raise TimestampError(f"{where}: column {timestamp!r} has type {kind}; expected a timestamp")
    nulls = entity_rows.column(timestamp).null_count
    if nulls:
        raise TimestampError(
            f"{where}: column {timestamp!r} has {nulls} null value(s); every row needs a time"
        )
    for projection in service.projections:
        for key in projection.view.join_keys:
            if key not in entity_rows.column_names:
                raise SchemaError(
                    f"{where}: no join key column {key!r} required by feature view "
                    f"{projection.view.name!r}; columns: {entity_rows.column_names}"
                )
    clash = sorted(set(service.output_names) & set(entity_rows.column_names))
    if clash:
        raise SchemaError(
            f"{where}: column(s) {clash} have the names of features of the service; rename them"
        )
