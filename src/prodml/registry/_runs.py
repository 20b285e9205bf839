"""Tracked runs: start one, log params, metrics (with history), tags, datasets and
artifacts, end it. Metrics and params are buffered and written in one transaction per
:meth:`Run.flush` (and at :meth:`Run.end`), so logging a run costs two small writes."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from prodml.core import (
    ConflictError,
    DefinitionError,
    RunNotFoundError,
    StateError,
)
from prodml.registry._records import RunInfo
from prodml.registry._versions import insert_for
from prodml.storage import ArtifactStore, MetadataDB
from prodml.storage._models import (
    Base,
    RunDatasetRow,
    RunLatestMetricRow,
    RunMetricRow,
    RunRow,
)

__all__ = ["Run", "RunServices", "load_run", "run_info"]

DATASET_ROLES = ("train", "validation", "test", "source")


@dataclass(frozen=True)
class RunServices:
    """What a run writes to, and the hook called with the record when it ends."""

    db: MetadataDB
    artifacts: ArtifactStore
    now: Callable[[], datetime]
    on_end: Callable[[RunInfo], None]


class Run:
    """A run being recorded. Use as a context manager: an exception marks it failed."""

    def __init__(self, services: RunServices, row: RunRow) -> None:
        self._services = services
        self.id = row.id
        self.model_name = row.model_name
        self._params: dict[str, Any] = dict(row.params)
        self._tags: dict[str, str] = dict(row.tags)
        self._job: dict[str, Any] = dict(row.job)
        self._artifacts: dict[str, Any] = dict(row.artifacts)
        self._metrics: list[tuple[str, float | None, int, datetime]] = []
        self._latest: dict[str, tuple[float | None, int]] = {}
        self._new_datasets: set[tuple[str, str]] = set()
        self._all_datasets: set[tuple[str, str]] = set()
        # The run row as started; this object is its only writer, so the final record
        # is built from memory instead of read back.
        self._start = run_info_of_new(row)
        self._next_step: dict[str, int] = {}
        self._dirty = False
        self._ended = False

    def __repr__(self) -> str:
        return f"Run({self.id!r}, model={self.model_name!r})"

    # --- logging (buffered) ---------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters; a parameter, once logged, cannot change value."""
        self._check_open()
        checked: dict[str, Any] = {}  # all checked first: a refused call records nothing
        for key, value in params.items():
            value = _json_scalar(value, what=f"run {self.id} param {key!r}")
            if key in self._params and self._params[key] != value:
                raise ConflictError(
                    f"run {self.id}: param {key!r} is already {self._params[key]!r}; "
                    f"cannot change it to {value!r}"
                )
            checked[key] = value
        self._params.update(checked)
        self._dirty = True

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metric values; ``step`` defaults to one past the key's last step."""
        self._check_open()
        now = self._services.now()
        for key, value in metrics.items():  # all checked before any is kept
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise DefinitionError(
                    f"run {self.id} metric {key!r}: expected a number, got {value!r}"
                )
        for key, value in metrics.items():
            at = self._next_step.get(key, 0) if step is None else int(step)
            self._next_step[key] = max(self._next_step.get(key, 0), at + 1)
            number = float(value)
            stored = None if math.isnan(number) else number
            self._metrics.append((key, stored, at, now))
            if key not in self._latest or at >= self._latest[key][1]:
                self._latest[key] = (stored, at)
        self._dirty = True

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._check_open()
        self._tags.update({str(k): str(v) for k, v in tags.items()})
        self._dirty = True

    def set_job(self, **job: Any) -> None:
        """Record how the training job ran (trainer, window, split …), read by reproduce."""
        self._check_open()
        self._job.update(job)
        self._dirty = True

    def log_dataset(self, fingerprint: str, role: str = "train") -> None:
        self._check_open()
        if role not in DATASET_ROLES:
            raise DefinitionError(
                f"run {self.id} dataset role {role!r}: expected one of {list(DATASET_ROLES)}"
            )
        self._new_datasets.add((fingerprint, role))
        self._all_datasets.add((fingerprint, role))
        self._dirty = True

    def log_artifact(self, name: str, data: bytes | str | Path) -> str:
        """Store bytes (or a file) content-addressed; returns the SHA-256 digest."""
        self._check_open()
        if isinstance(data, bytes):
            digest = self._services.artifacts.put_bytes(data)
            size = len(data)
        else:
            digest = self._services.artifacts.put_file(data)
            size = Path(data).stat().st_size
        self._artifacts[name] = {"digest": digest, "size": size}
        self._dirty = True
        return digest

    def log_text(self, name: str, text: str) -> str:
        return self.log_artifact(name, text.encode("utf-8"))

    # --- writing ------------------------------------------------------------------
    def flush(self) -> None:
        """Write everything buffered since the last flush, in one transaction."""
        if not self._dirty:
            return
        with self._services.db.write() as session:
            self._write(session, {})
        self._metrics.clear()
        self._new_datasets.clear()
        self._dirty = False

    def _write(self, session: Session, extra: dict[str, Any]) -> None:
        """Three statements at most, each compiled once per process and run with
        executemany: UPDATE the run, INSERT the metric values, upsert the latest values
        (kept only when the step is not older); plus one INSERT of new dataset links."""
        conn = session.connection()
        statements = _statements(conn.dialect.name)
        values = {
            "params": dict(self._params),
            "tags": dict(self._tags),
            "job": dict(self._job),
            "artifacts": dict(self._artifacts),
            **extra,
        }
        updated = conn.execute(
            statements.end_run if extra else statements.update_run, {"run_id": self.id, **values}
        )
        if updated.rowcount == 0:
            raise RunNotFoundError(f"run {self.id!r} does not exist")
        if self._metrics:
            conn.execute(
                statements.insert_metrics,
                [
                    {"run_id": self.id, "key": k, "value": v, "step": st, "timestamp": t}
                    for k, v, st, t in self._metrics
                ],
            )
            newest: dict[str, tuple[float | None, int]] = {}
            for key, value, step, _ in self._metrics:
                if key not in newest or step >= newest[key][1]:
                    newest[key] = (value, step)
            conn.execute(
                statements.upsert_latest,
                [
                    {"run_id": self.id, "key": k, "value": v, "step": st}
                    for k, (v, st) in newest.items()
                ],
            )
        if self._new_datasets:
            conn.execute(
                statements.insert_datasets,
                [
                    {"run_id": self.id, "fingerprint": f, "role": r}
                    for f, r in sorted(self._new_datasets)
                ],
            )

    def end(self, status: str = "finished", error: str | None = None) -> RunInfo:
        """Flush and close the run as ``finished`` or ``failed``."""
        if status not in {"finished", "failed"}:
            raise DefinitionError(f"run {self.id}: end status {status!r}: expected finished|failed")
        self._check_open()
        end_time = self._services.now()
        with self._services.db.write() as session:
            self._write(session, {"status": status, "error": error, "end_time": end_time})
        self._ended = True
        info = replace(
            self._start,
            status=status,
            params=dict(self._params),
            tags=dict(self._tags),
            job=dict(self._job),
            artifacts=dict(self._artifacts),
            error=error,
            end_time=end_time,
            metrics={k: math.nan if v is None else v for k, (v, _) in self._latest.items()},
            datasets=tuple(sorted(self._all_datasets)),
        )
        self._services.on_end(info)
        return info

    def _check_open(self) -> None:
        if self._ended:
            raise StateError(f"run {self.id} has ended; start a new run to log more")

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ended:
            return
        if exc is None:
            self.end("finished")
        else:
            self.end("failed", error=f"{type(exc).__name__}: {exc}")


_RUNS = Base.metadata.tables["runs"]
_LATEST = Base.metadata.tables["run_latest_metrics"]
_METRICS = Base.metadata.tables["run_metrics"]
_DATASETS = Base.metadata.tables["run_datasets"]


@dataclass(frozen=True)
class _Statements:
    update_run: Any
    end_run: Any
    insert_run: Any
    insert_metrics: Any
    upsert_latest: Any
    insert_datasets: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    """Constant statements (values bound at execution), so SQLAlchemy compiles each once."""
    insert = insert_for(dialect)
    upsert = insert(_LATEST)
    logged: dict[str, Any] = {n: bindparam(n) for n in ("params", "tags", "job", "artifacts")}
    ended: dict[str, Any] = {n: bindparam(n) for n in ("status", "error", "end_time")}
    return _Statements(
        update_run=update(_RUNS).where(_RUNS.c.id == bindparam("run_id")).values(**logged),
        end_run=update(_RUNS).where(_RUNS.c.id == bindparam("run_id")).values(**logged, **ended),
        insert_run=insert(_RUNS),
        insert_metrics=insert(_METRICS),
        upsert_latest=upsert.on_conflict_do_update(
            index_elements=["run_id", "key"],
            set_={"value": upsert.excluded.value, "step": upsert.excluded.step},
            where=upsert.excluded.step >= _LATEST.c.step,
        ),
        insert_datasets=insert(_DATASETS).on_conflict_do_nothing(),
    )


def _json_scalar(value: Any, *, what: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, list | tuple):
        return [_json_scalar(v, what=what) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_scalar(v, what=what) for k, v in value.items()}
    raise DefinitionError(f"{what}: expected a JSON value (number, string, list…), got {value!r}")


def run_infos(session: Session, rows: Sequence[RunRow]) -> list[RunInfo]:
    """The records of several runs, their metrics and datasets read in two queries."""
    ids = [row.id for row in rows]
    metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
    datasets: dict[str, list[tuple[str, str]]] = {i: [] for i in ids}
    if ids:
        for m in session.scalars(
            select(RunLatestMetricRow).where(RunLatestMetricRow.run_id.in_(ids))
        ):
            metrics[m.run_id][m.key] = math.nan if m.value is None else m.value
        for d in session.scalars(select(RunDatasetRow).where(RunDatasetRow.run_id.in_(ids))):
            datasets[d.run_id].append((d.fingerprint, d.role))
    return [
        replace(
            run_info_of_new(row), metrics=metrics[row.id], datasets=tuple(sorted(datasets[row.id]))
        )
        for row in rows
    ]


def run_info(session: Session, row: RunRow) -> RunInfo:
    """The record of a run, with its latest metrics and datasets."""
    return run_infos(session, [row])[0]


def insert_run(session: Session, row: RunRow) -> None:
    """Write a new run row with one cached INSERT (no ORM unit of work)."""
    values = {column.key: getattr(row, column.key) for column in _RUNS.columns}
    session.connection().execute(_statements(session.get_bind().dialect.name).insert_run, values)


def run_info_of_new(row: RunRow) -> RunInfo:
    """The record of a run row just created (no metrics or datasets yet)."""
    return RunInfo(
        id=row.id,
        model_name=row.model_name,
        status=row.status,
        params=dict(row.params),
        tags=dict(row.tags),
        seed=row.seed,
        environment=dict(row.environment),
        code=dict(row.code),
        service_name=row.service_name,
        service_version=row.service_version,
        parent_version=row.parent_version,
        job=dict(row.job),
        artifacts=dict(row.artifacts),
        error=row.error,
        start_time=row.start_time,
        end_time=row.end_time,
    )


def require_run(session: Session, run_id: str) -> None:
    """Raise :class:`RunNotFoundError` unless the run exists (reads only its id)."""
    if session.scalar(select(RunRow.id).where(RunRow.id == run_id)) is None:
        raise RunNotFoundError(f"run {run_id!r} does not exist")


def load_run(session: Session, run_id: str) -> RunRow:
    row = session.get(RunRow, run_id)
    if row is None:
        raise RunNotFoundError(f"run {run_id!r} does not exist")
    return row


def metric_rows(session: Session, run_id: str, key: str) -> Iterable[RunMetricRow]:
    return session.scalars(
        select(RunMetricRow)
        .where(RunMetricRow.run_id == run_id, RunMetricRow.key == key)
        .order_by(RunMetricRow.step, RunMetricRow.id)
    )
