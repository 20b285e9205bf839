"""The monitoring job: one incremental pass over every endpoint's prediction log.

For each endpoint, every window that has closed (plus ``grace``) and was not computed
before is read once, split by (arm, model version, shadow), checked against that model
version's reference, and stored with its results. Windows whose labels may still
arrive (until ``label_horizon`` after they end) get their delayed-label results
recomputed on every pass; then they are final. Alert rules run over the new values.

Both logs are read through their :class:`~prodml.storage.LogStore`. An unreadable log
file (see :meth:`~prodml.storage.LogStore.read`) is moved to its log's quarantine; a window reports the quarantined files of its hours (both logs) as
``log.quarantined_files``, computed from the rest of its records, and the pass lists the
files it moved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from prodml.core import Clock, MonitoringConfig, ensure_utc, parse_duration
from prodml.core.errors import ConflictError
from prodml.features import FeatureStore
from prodml.monitoring._alerting import LABEL_CHECKS, MonitorAlerts
from prodml.monitoring._checks import (
    Result,
    drift_checks,
    emit,
    label_checks,
    operational_checks,
    prediction_checks,
    quality_checks,
    recent_calibrator,
)
from prodml.monitoring._due import Backlog, Schedule
from prodml.monitoring._fitting import REFERENCE_ERRORS, ReferenceFitter
from prodml.monitoring._records import LabelIndex, RecordGroups
from prodml.monitoring._reference import MonitorReference
from prodml.monitoring._sinks import Notification
from prodml.monitoring._store import MonitorStore, StoredWindow
from prodml.monitoring._windows import Window
from prodml.registry import ModelRegistry
from prodml.storage import (
    ArtifactStore,
    LogStore,
    LogStores,
    MetadataDB,
    QuarantinedFile,
    feature_column,
)

__all__ = ["Monitor", "MonitorRun", "WindowReport"]

log = logging.getLogger("prodml.monitoring")

#: At most this many quarantined files are named in a window's result (all are counted).
_LISTED_FILES = 20


@dataclass(frozen=True)
class WindowReport:
    """One computed (or refreshed) window and its results."""

    window: StoredWindow
    results: list[Result]

    def to_dict(self) -> dict[str, Any]:
        return {**self.window.to_dict(), "results": [r.to_dict() for r in self.results]}


@dataclass
class MonitorRun:
    """What one pass did."""

    computed: list[WindowReport] = field(default_factory=list)
    refreshed: list[WindowReport] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    #: Per endpoint: the records no due window holds yet, and why they wait.
    waiting: list[Backlog] = field(default_factory=list)
    #: The unreadable log files this pass moved to the quarantine (paths relative to the
    #: project's state directory): ``log``, ``endpoint``, ``path``, ``quarantined_to``,
    #: ``reason``.
    quarantined: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "computed": [w.to_dict() for w in self.computed],
            "refreshed": [w.to_dict() for w in self.refreshed],
            "notifications": self.notifications,
            "waiting": [b.to_dict() for b in self.waiting],
            "quarantined": self.quarantined,
        }


Progress = Callable[[str, int, int], None]


class _Moved(list[QuarantinedFile]):
    """The ``quarantine`` list of one log's reads in a pass: each file a read moves is
    also noted in ``journal`` with its log, so that the pass lists the moves of both
    logs in the order they happened."""

    def __init__(self, log: LogStore, journal: list[tuple[LogStore, QuarantinedFile]]) -> None:
        super().__init__()
        self._log = log
        self._journal = journal

    def append(self, moved: QuarantinedFile) -> None:
        super().append(moved)
        self._journal.append((self._log, moved))

    def extend(self, moved: Iterable[QuarantinedFile]) -> None:
        for one in moved:
            self.append(one)


@dataclass
class _Moves:
    """The log files one pass moved to the quarantine: the lists its reads of each log
    append to, and every move in order."""

    predictions: _Moved
    labels: _Moved
    journal: list[tuple[LogStore, QuarantinedFile]]

    @classmethod
    def of(cls, logs: LogStores) -> _Moves:
        journal: list[tuple[LogStore, QuarantinedFile]] = []
        return cls(_Moved(logs.predictions, journal), _Moved(logs.labels, journal), journal)

    def described(self) -> list[dict[str, str]]:
        """Each move as :meth:`~prodml.storage.LogStore.describe` reports it."""
        return [log.describe(moved) for log, moved in self.journal]


class Monitor:
    """Windows over the prediction log, checked against each model version's reference."""

    def __init__(
        self,
        *,
        config: MonitoringConfig,
        db: MetadataDB,
        artifacts: ArtifactStore,
        registry: ModelRegistry,
        features: FeatureStore,
        logs: LogStores,
        clock: Clock,
    ) -> None:
        self.config = config
        self.store = MonitorStore(db)
        self._logs = logs
        #: Where every read moves unreadable log files (new lists per pass).
        self._moves = _Moves.of(logs)
        self._clock = clock
        self._fitter = ReferenceFitter(
            config=config, store=self.store, artifacts=artifacts, registry=registry,
            features=features, clock=clock, read=self._read_window,
        )  # fmt: skip
        self.schedule = Schedule.of(config)
        self.rows, self.span = self.schedule.rows, self.schedule.span
        self.label_horizon = parse_duration(config.label_horizon, field="monitoring.label_horizon")
        self.alerts = MonitorAlerts(config.alerts, self.store, clock)

    # --- references ---------------------------------------------------------------------
    def reference(self, model_version: str, endpoint: str | None = None) -> MonitorReference:
        """The stored reference of ``model_version`` (on ``endpoint`` when ``[monitoring]
        reference`` is a past window of its log), fitted and stored on first use."""
        return self._fitter.reference(model_version, endpoint)

    def fit_reference(self, model_version: str) -> MonitorReference:
        """Profiles of the version's training set and of its scores on the test split."""
        return self._fitter.fit(model_version)

    def stored(self, *, endpoint: str | None = None) -> list[WindowReport]:
        """Every computed window (of ``endpoint``) with its stored results, in time order."""
        found = self.store.windows(endpoint=endpoint)
        results = self.store.results([w.id for w in found])
        return [WindowReport(w, results[w.id]) for w in found]

    # --- one pass -----------------------------------------------------------------------
    def endpoints(self) -> list[str]:
        """Endpoints with a prediction log."""
        return self._logs.predictions.endpoints()

    def run(self, *, endpoint: str | None = None, progress: Progress | None = None) -> MonitorRun:
        """Compute every closed, new window and refresh the ones awaiting labels."""
        self._moves = _Moves.of(self._logs)
        try:
            return self._run(endpoint, progress)
        finally:
            self._fitter.forget_models()

    def _run(self, endpoint: str | None, progress: Progress | None) -> MonitorRun:
        names = self.endpoints() if endpoint is None else [endpoint]
        now = ensure_utc(self._clock.now())
        outcome = MonitorRun()
        sent: list[Notification] = []
        for name in names:
            due, backlog = self.schedule.due(
                self._logs.predictions, name, now, self.store.computed(name),
                self._moves.predictions,
            )  # fmt: skip
            outcome.waiting.append(backlog)
            labels = LabelIndex(
                self._logs.labels, name, self._moves.labels,
                predictions=self._logs.predictions, prediction_quarantine=self._moves.predictions,
            )  # fmt: skip
            computed: list[WindowReport] = []
            for i, window in enumerate(due):
                if progress is not None:
                    progress(f"{name} {window.label}", i, len(due))
                computed += self._compute(name, window, labels, now)
            if progress is not None and due:
                progress(f"{name} done", len(due), len(due))
            refreshed = self._refresh(name, labels, now)
            outcome.computed += computed
            outcome.refreshed += refreshed
            windows_seen = [(r.window, r.results) for r in [*computed, *refreshed]]
            sent += self.alerts.process(windows_seen)
        self.alerts.refresh(sent)
        outcome.notifications = [n.to_dict() for n in sent]
        outcome.quarantined = self._moves.described()
        return outcome

    def _quarantined(self, endpoint: str, window: Window) -> Result:
        """``log.quarantined_files``: the files of both logs of ``window``'s hours that
        lie in the quarantine (moved by this pass or an earlier one)."""
        files = [
            path
            for log in (self._logs.predictions, self._logs.labels)
            for path in log.quarantined(endpoint=endpoint, start=window.start, end=window.end)
        ]
        if not files:
            return emit("log", "quarantined_files", 0.0)
        return emit("log", "quarantined_files", float(len(files)), status="breach",
                    details={"files": files[:_LISTED_FILES]})  # fmt: skip

    def _read_window(self, endpoint: str, window: Window) -> pa.Table:
        """Every column of the records of ``endpoint``'s ``window``."""
        return self._logs.predictions.read(endpoint=endpoint, start=window.start, end=window.end,
                                           quarantine=self._moves.predictions)  # fmt: skip

    def _compute(
        self, endpoint: str, window: Window, labels: LabelIndex, now: datetime
    ) -> list[WindowReport]:
        table = self._read_window(endpoint, window)
        seconds = (window.end - window.start).total_seconds()
        final = now >= window.end + self.label_horizon
        if table.num_rows == 0:
            moved = self._quarantined(endpoint, window)
            found = [moved] if moved.value else []
            stored = self._save(endpoint, "", "", False, window, 0, "empty", found, 0, True, now)
            return [] if stored is None else [WindowReport(stored, found)]
        labels.get(window.start)  # read (and quarantine) the labels before counting
        quarantine = self._quarantined(endpoint, window)
        previous = self._previous(endpoint, window)
        reports = []
        for arm, model_version, shadow, part in RecordGroups(table):
            results = [*operational_checks(part, seconds), quarantine]
            status = "computed" if part.num_rows >= self.config.min_rows else "too_few_rows"
            label_rows = 0
            try:
                reference = self.reference(model_version, endpoint)
            except REFERENCE_ERRORS as exc:  # a missing or broken reference: say so, keep the rest
                results.append(emit("reference", "available", None, status="error",
                                      details={"reason": f"{type(exc).__name__}: {exc}"}))  # fmt: skip
                log.warning(
                    "monitoring %s %s: no reference for %s: %s",
                    endpoint,
                    window.label,
                    model_version,
                    exc,
                )
            else:
                if not shadow:
                    results += quality_checks(part, reference, self.config)
                    results += drift_checks(part, reference, self.config)
                recent = None
                if previous is not None:
                    before, earlier = previous
                    recent = recent_calibrator(
                        earlier.select(arm, model_version, shadow),
                        labels.get(before),
                        self.config.min_rows,
                    )
                results += prediction_checks(part, reference, self.config, recent)
                label_results, label_rows = label_checks(
                    part, labels.get(window.start), reference, self.config
                )
                results += label_results
            stored = self._save(endpoint, arm, model_version, shadow, window, part.num_rows, status,
                                results, label_rows, final, now)  # fmt: skip
            if stored is not None:
                reports.append(WindowReport(stored, results))
        return reports

    def _previous(self, endpoint: str, window: Window) -> tuple[datetime, RecordGroups] | None:
        """With ``calibration = "recent"``: the start of the window just before this one
        (same length) and its records by group, for the calibration maps of its groups."""
        if self.config.calibration != "recent" or self.rows:
            return None
        before = self.span.add(window.start, -1)
        return before, RecordGroups(self._label_records(endpoint, before, window.start))

    def _label_records(self, endpoint: str, start: datetime, end: datetime) -> pa.Table:
        """The records of ``[start, end)`` with just the columns label checks read."""
        segments = [feature_column(name) for name in self.config.segments]
        columns = [
            "time",
            "request_id",
            "row",
            "output",
            "arm",
            "model_version",
            "shadow",
            *segments,
        ]
        return self._logs.predictions.read(
            endpoint=endpoint,
            start=start,
            end=end,
            columns=columns,
            quarantine=self._moves.predictions,
        )

    def _refresh(self, endpoint: str, labels: LabelIndex, now: datetime) -> list[WindowReport]:
        """Recompute the label checks of the windows still awaiting labels (in time order,
        so each window's records are read once for all its groups)."""
        reports = []
        span: tuple[datetime, datetime] | None = None
        records = RecordGroups(pa.table({}))
        for stored in self.store.open_label_windows(endpoint):
            if stored.status == "empty" or not stored.model_version:
                continue
            final = now >= stored.end + self.label_horizon
            if not final and not stored.label_rows and not labels.get(stored.start).num_rows:
                continue  # no label since the window began: its label results stand as they are
            if span != (stored.start, stored.end):
                span = (stored.start, stored.end)
                records = RecordGroups(self._label_records(endpoint, *span))
            part = records.select(stored.arm, stored.model_version, stored.shadow)
            try:
                reference = self.reference(stored.model_version, endpoint)
            except REFERENCE_ERRORS as exc:  # reported when the window was computed
                log.warning(
                    "monitoring %s %s: labels not refreshed, no reference for %s: %s",
                    endpoint,
                    Window(stored.start, stored.end).label,
                    stored.model_version,
                    exc,
                )
                continue
            results, label_rows = label_checks(
                part, labels.get(stored.start), reference, self.config
            )
            if label_rows == stored.label_rows and not final:
                continue
            self.store.replace_results(
                stored.id, LABEL_CHECKS, results, label_rows=label_rows, labels_final=final
            )
            reports.append(WindowReport(_updated(stored, label_rows, final), results))
        return reports

    def _save(
        self, endpoint: str, arm: str, model_version: str, shadow: bool, window: Window, rows: int,
        status: str, results: Sequence[Result], label_rows: int, final: bool, now: datetime,
    ) -> StoredWindow | None:  # fmt: skip
        """Store a window; None when another pass (a second watcher) stored it first."""
        try:
            window_id = self.store.save_window(
                endpoint=endpoint, arm=arm, model_version=model_version, shadow=shadow,
                start=window.start, end=window.end, rows=rows, status=status, results=results,
                label_rows=label_rows, labels_final=final, now=now,
            )  # fmt: skip
        except ConflictError:
            log.info("monitoring %s %s: computed by another pass meanwhile", endpoint, window.label)
            return None
        return StoredWindow(window_id, endpoint, arm, model_version, shadow, window.start, window.end,
                            rows, status, label_rows, final)  # fmt: skip


def _updated(stored: StoredWindow, label_rows: int, final: bool) -> StoredWindow:
    return StoredWindow(**{**stored.__dict__, "label_rows": label_rows, "labels_final": final})
