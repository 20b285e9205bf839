"""``prodml labels run``: the label jobs of ``prodml.toml`` (``[[labels.jobs]]``) into the
label log.

A job computes its endpoint's labels with a DuckDB query or a Python function (see
:mod:`prodml.core._label_config`). Of its output, only labels already known are written
— ``time`` at or before the project clock's now — and only those not written before:
each job keeps a watermark, the latest ``time`` it wrote, in
``<state dir>/label_jobs/<name>.json`` (replaced atomically), and writes the rows after
it. Rows go through the same checks as ``POST /v1/feedback`` and ``prodml labels
import`` and through the same log writer, with ``source = "job:<name>"``.

A run that stops between writing its labels and saving its watermark writes them again
next time; the monitor reads the latest label per record, so a repeated label changes
nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import Clock, ConfigError, SchemaError, SourceError, ensure_utc
from prodml.core._label_config import LabelJobConfig
from prodml.features import import_user_file, to_arrow
from prodml.serving._feedback import parse_feedback
from prodml.serving._wire import RequestInvalid
from prodml.storage import LogStore
from prodml.storage._atomic import atomic_write

__all__ = ["LabelJobRun", "run_label_jobs", "watermark_path"]

#: Where a project keeps its label jobs' watermarks, under its state directory.
JOBS_DIR = Path("label_jobs")
_TIMESTAMP = pa.timestamp("us", tz="UTC")
#: Output columns that are not entity keys.
_META = frozenset({"label", "reward", "time", "event_time", "request_id", "row", "endpoint"})
_ITEM = re.compile(r"items\[(\d+)\]\.?(.*)")
_SHOWN = 5


@dataclass(frozen=True)
class LabelJobRun:
    """What one run of a label job did: the labels it ``written`` and its
    ``watermark`` after the run (None: it never wrote a label)."""

    name: str
    written: int
    watermark: datetime | None

    def to_dict(self) -> dict[str, Any]:
        watermark = None if self.watermark is None else self.watermark.isoformat()
        return {"name": self.name, "written": self.written, "watermark": watermark}


def watermark_path(state_dir: Path, name: str) -> Path:
    """The file holding label job ``name``'s watermark."""
    return state_dir / JOBS_DIR / f"{name}.json"


def run_label_jobs(
    jobs: Sequence[LabelJobConfig],
    *,
    root: Path,
    state_dir: Path,
    store: LogStore,
    clock: Clock,
) -> list[LabelJobRun]:
    """Run ``jobs`` in order: each writes to the label log ``store`` its labels known by
    ``clock``'s now and not written before. Relative file names (the query's, the
    function's module) are relative to the project ``root``; watermarks live under
    ``state_dir``. A failing job raises, naming itself; the jobs before it are done."""
    return [_run(job, root=root, state_dir=state_dir, store=store, clock=clock) for job in jobs]


def _run(
    job: LabelJobConfig, *, root: Path, state_dir: Path, store: LogStore, clock: Clock
) -> LabelJobRun:
    where = f"label job {job.name!r}"
    path = watermark_path(state_dir, job.name)
    watermark = _load_watermark(path, where)
    now = ensure_utc(clock.now())
    output = _output(job, root, watermark, now, where)
    times = _times(output, "time", where)
    if times.null_count:
        raise SchemaError(f"{where}: column 'time' has {times.null_count} empty value(s); "
                          "expected when each label became known")  # fmt: skip
    due = pc.less_equal(times, pa.scalar(now, _TIMESTAMP))
    if watermark is not None:
        due = pc.and_(due, pc.greater(times, pa.scalar(watermark, _TIMESTAMP)))
    new = output.set_column(output.column_names.index("time"), "time", times).filter(due)
    if new.num_rows == 0:
        return LabelJobRun(job.name, 0, watermark)
    records = _records(job, new, pc.indices_nonzero(due).to_pylist(), now, where)
    with store.open_writer(clock=clock, max_queue=len(records) + 1) as writer:
        writer.extend(records)
    stats = writer.stats
    if stats.queued or stats.dropped:
        raise SourceError(
            f"{where}: {stats.queued + stats.dropped} of {len(records)} labels were not "
            f"written ({stats.last_error}); its watermark is unchanged, so they are retried"
        )
    latest = pc.max(new["time"]).as_py()
    _save_watermark(path, job, latest, now)
    return LabelJobRun(job.name, stats.written_rows, latest)


def _output(
    job: LabelJobConfig, root: Path, start: datetime | None, end: datetime, where: str
) -> pa.Table:
    """The job's output with the columns its ``join`` needs, checked."""
    if job.function is not None:
        table = to_arrow(_function(job.function, root, where)(start, end), what=where)
    else:
        table = _query(job.sql or "", root, where)
    columns = table.column_names
    if "label" not in columns and "reward" not in columns:
        raise SchemaError(f"{where}: its output has no 'label' or 'reward' column; "
                          f"columns are {columns}")  # fmt: skip
    needed = ["time", "request_id"] if job.join == "request_id" else ["time", "event_time"]
    for name in needed:
        if name not in columns:
            raise SchemaError(
                f"{where}: its output has no {name!r} column (join = {job.join!r}); "
                f"columns are {columns}"
            )
    if "endpoint" in columns:
        raise SchemaError(f"{where}: column 'endpoint' is not expected: the job's labels are "
                          f"for its endpoint {job.endpoint!r}")  # fmt: skip
    if job.join == "entities":
        if "request_id" in columns or "row" in columns:
            extra = "request_id" if "request_id" in columns else "row"
            raise SchemaError(f"{where}: column {extra!r} is not expected with join = "
                              "'entities' (entity key columns and event_time)")  # fmt: skip
        if not _keys(columns):
            raise SchemaError(f"{where}: its output has no entity key column (join = "
                              f"'entities'); columns are {columns}")  # fmt: skip
    return table


def _query(sql: str, root: Path, where: str) -> pa.Table:
    """The rows of a DuckDB query run in UTC, file names relative to ``root``."""
    try:
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET file_search_path = '{str(root).replace(chr(39), chr(39) * 2)}'")
            return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise SourceError(f"{where}: its sql failed: {exc}") from None


def _function(spec: str, root: Path, where: str) -> Callable[..., Any]:
    """The function ``module.py:function`` (module relative to ``root``), imported."""
    module_file, _, name = spec.rpartition(":")
    path = (root / module_file).resolve()
    if not path.is_file():
        raise ConfigError(f"{where}: function {spec!r}: no such file {str(path)!r}")
    module = import_user_file(path, prefix="prodml_user_labels", what=f"{where}: {module_file}")
    func = getattr(module, name, None)
    if not callable(func):
        raise ConfigError(f"{where}: function {spec!r}: {module_file} has no function {name!r}")

    def call(start: datetime | None, end: datetime) -> Any:
        try:
            return func(start, end)
        except Exception as exc:
            raise SourceError(f"{where}: {spec} raised {type(exc).__name__}: {exc}") from exc

    return call


def _times(table: pa.Table, name: str, where: str) -> pa.ChunkedArray:
    """Column ``name`` as UTC timestamps in microseconds: times without a zone are UTC,
    text is ISO 8601, finer times are truncated to the microsecond (the log's unit)."""
    column = table[name]
    kind = column.type
    try:
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            return pc.cast(column, _TIMESTAMP, safe=False)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                return pc.cast(column, _TIMESTAMP)
            except pa.ArrowInvalid:  # no zone: UTC
                return pc.cast(pc.cast(column, pa.timestamp("us")), _TIMESTAMP)
        if pa.types.is_null(kind):
            return pc.cast(column, _TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"{where}: column {name!r} holds values that are not times: {exc}; "
                          "expected timestamps or ISO 8601 text") from None  # fmt: skip
    raise SchemaError(f"{where}: column {name!r} has type {kind}; expected timestamps or "
                      "ISO 8601 text")  # fmt: skip


def _keys(columns: Sequence[str]) -> list[str]:
    """The entity key columns among an output's ``columns``."""
    return [c for c in columns if c not in _META]


def _records(
    job: LabelJobConfig, table: pa.Table, positions: Sequence[int], now: datetime, where: str
) -> list[dict[str, Any]]:
    """Label records of the new rows ``table`` (at ``positions`` of the job's output),
    checked as feedback is; :class:`SchemaError` naming the rows and fields at fault."""
    table = _plain_numbers(table)
    if job.join == "entities":
        table = table.set_column(
            table.column_names.index("event_time"),
            "event_time",
            _times(table, "event_time", where),
        )
    keys = _keys(table.column_names) if job.join == "entities" else []
    items: list[dict[str, Any]] = []
    for row in table.to_pylist():
        item: dict[str, Any] = {"endpoint": job.endpoint, "time": row["time"].isoformat()}
        for name in ("label", "reward"):
            if row.get(name) is not None:
                item[name] = row[name]
        if job.join == "request_id":
            request_id = row["request_id"]
            item["request_id"] = str(request_id) if isinstance(request_id, int) else request_id
        else:
            event_time = row["event_time"]
            item["event_time"] = None if event_time is None else event_time.isoformat()
            item["entities"] = {k: row[k] for k in keys}
        items.append(item)
    try:
        records = parse_feedback({"items": items}, now=now)
    except RequestInvalid as exc:
        raise _invalid(where, exc, positions) from None
    rows = _rows(table, where) if "row" in table.column_names else None
    for index, record in enumerate(records):
        record["source"] = f"job:{job.name}"
        if rows is not None and rows[index] is not None:
            record["row"] = rows[index]
    return records


def _plain_numbers(table: pa.Table) -> pa.Table:
    """Decimal columns (DuckDB's exact numbers) as float64, which feedback accepts."""
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):
            table = table.set_column(i, field.name, pc.cast(table[field.name], pa.float64()))
    return table


def _rows(table: pa.Table, where: str) -> list[int | None]:
    """The ``row`` column: the row of its request each label answers (null: every row)."""
    column = table["row"]
    if not (pa.types.is_integer(column.type) or pa.types.is_null(column.type)):
        raise SchemaError(f"{where}: column 'row' has type {column.type}; expected integers "
                          "(the row of the request, from 0)")  # fmt: skip
    rows = pc.cast(column, pa.int64())
    if pc.any(pc.less(rows, 0)).as_py():
        raise SchemaError(f"{where}: column 'row' holds negative values; expected the row "
                          "of the request, from 0")  # fmt: skip
    values: list[int | None] = rows.to_pylist()
    return values


def _invalid(where: str, error: RequestInvalid, positions: Sequence[int]) -> SchemaError:
    """``error`` of :func:`parse_feedback` as the job's error, naming output rows."""
    shown = []
    for problem in error.details[:_SHOWN]:
        found = _ITEM.fullmatch(problem.field)
        field = problem.field
        if found is not None:
            name = found.group(2)
            field = f"row {positions[int(found.group(1))]}" + (f" {name!r}" if name else "")
        shown.append(f"{field} {problem.problem} (expected {problem.expected})")
    more = f"; and {len(error.details) - _SHOWN} more" if len(error.details) > _SHOWN else ""
    return SchemaError(
        f"{where}: {len(error.details)} problem(s) in its output: {'; '.join(shown)}{more}"
    )


def _load_watermark(path: Path, where: str) -> datetime | None:
    """The job's watermark (None before its first write)."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())["watermark"]
        return ensure_utc(datetime.fromisoformat(value))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"{where}: its watermark file {str(path)!r} is unreadable ({type(exc).__name__}: "
            f'{exc}); expected {{"watermark": "<ISO 8601 time>"}}. Delete it to write every '
            "label again (the monitor keeps the latest label per record)"
        ) from None


def _save_watermark(path: Path, job: LabelJobConfig, watermark: datetime, now: datetime) -> None:
    """Replace the job's watermark file atomically."""
    body = {
        "name": job.name,
        "endpoint": job.endpoint,
        "watermark": watermark.astimezone(UTC).isoformat(),
        "updated_at": now.isoformat(),
    }
    with atomic_write(path) as handle:
        handle.write(json.dumps(body, indent=2).encode() + b"\n")
