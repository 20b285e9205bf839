"""The monitoring job: one incremental pass over every endpoint's prediction log.

For each endpoint, every window that has closed (plus ``grace``) and was not computed
before is read once, split by (arm, model version, shadow), checked against that model
version's reference, and stored with its results. Windows whose labels may still
arrive (until ``label_horizon`` after they end) get their delayed-label results
recomputed on every pass; then they are final. Alert rules run over the new values.

An unreadable log file (see :func:`~prodml.storage.read_log`) is moved to its log's
quarantine; a window reports the quarantined files of its hours (both logs) as
``log.quarantined_files``, computed from the rest of its records, and the pass lists the
files it moved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from prodml.core import Clock, MonitoringConfig, ensure_utc, parse_duration
from prodml.core.errors import ConflictError, NotFoundError, SchemaError
from prodml.features import FeatureStore
from prodml.monitoring._alerting import LABEL_CHECKS, MonitorAlerts
from prodml.monitoring._checks import (
    FEATURE_PREFIX,
    Result,
    drift_checks,
    emit,
    label_checks,
    operational_checks,
    prediction_checks,
    quality_checks,
    recent_calibrator,
)
from prodml.monitoring._drift import DriftReference
from prodml.monitoring._due import Backlog, Schedule
from prodml.monitoring._performance import Calibrator, classification_metrics, regression_metrics
from prodml.monitoring._records import LabelIndex, groups, live_arm, select_group
from prodml.monitoring._reference import PREDICTION, MonitorReference, column_kinds, scores_array
from prodml.monitoring._sinks import Notification
from prodml.monitoring._store import MonitorStore, StoredWindow
from prodml.monitoring._windows import Window
from prodml.registry import ModelRegistry
from prodml.stats import NumericProfile
from prodml.storage import (
    LABELS_DIR,
    PREDICTIONS_DIR,
    ArtifactStore,
    MetadataDB,
    QuarantinedFile,
    quarantined_files,
    read_log,
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
        state_dir: Path,
        clock: Clock,
    ) -> None:
        self.config = config
        self.store = MonitorStore(db)
        self._artifacts = artifacts
        self._registry = registry
        self._features = features
        self._state_dir = state_dir
        self._predictions = state_dir / PREDICTIONS_DIR
        self._labels = state_dir / LABELS_DIR
        #: Where every read moves unreadable log files (a new list per pass).
        self._moved: list[QuarantinedFile] = []
        self._clock = clock
        self._references: dict[str, MonitorReference] = {}
        self.schedule = Schedule.of(config)
        self.rows, self.span = self.schedule.rows, self.schedule.span
        self.label_horizon = parse_duration(config.label_horizon, field="monitoring.label_horizon")
        self.alerts = MonitorAlerts(config.alerts, self.store, clock)

    # --- references ---------------------------------------------------------------------
    def reference(self, model_version: str, endpoint: str | None = None) -> MonitorReference:
        """The stored reference of ``model_version`` (on ``endpoint`` when ``[monitoring]
        reference`` is a past window of its log), fitted and stored on first use."""
        window = self._reference_window()
        if window is not None and endpoint is None:
            raise SchemaError(
                f"monitoring reference {self.config.reference!r} is a window of an endpoint's "
                "log: name the endpoint"
            )
        key = (
            model_version
            if window is None
            else f"{model_version}|{endpoint}|{self.config.reference}"
        )
        cached = self._references.get(key)
        if cached is not None:
            return cached
        stored = self.store.reference(key)
        if stored is not None:
            reference = MonitorReference.from_bytes(self._artifacts.get_bytes(stored[0]))
        else:
            reference = self.fit_reference(model_version)
            if window is not None:
                reference = self._window_reference(reference, model_version, str(endpoint), window)
            digest = self._artifacts.put_bytes(reference.to_bytes())
            self.store.save_reference(
                key, digest, reference.meta.get("source", {}), self._clock.now()
            )
        self._references[key] = reference
        return reference

    def _reference_window(self) -> Window | None:
        if self.config.reference == "training":
            return None
        start, _, end = self.config.reference.partition("/")
        return Window(_utc(start), _utc(end))

    def _window_reference(
        self, base: MonitorReference, model_version: str, endpoint: str, window: Window
    ) -> MonitorReference:
        """``base`` (task, calibration, reference metrics from the training run) with the
        input and score profiles of the live records of ``window`` instead."""
        table = select_group(
            read_log(self._predictions, partition=endpoint, start=window.start, end=window.end,
                     quarantine=self._moved),
            *live_arm(read_log(self._predictions, partition=endpoint, start=window.start,
                                end=window.end, columns=["arm", "model_version", "shadow"],
                                quarantine=self._moved), model_version),
        )  # fmt: skip
        if table.num_rows == 0:
            raise NotFoundError(
                f"monitoring reference window {window.label} of endpoint {endpoint!r} holds no "
                f"live prediction of {model_version}"
            )
        features = {
            name: table[FEATURE_PREFIX + name]
            for name in base.inputs
            if FEATURE_PREFIX + name in table.column_names
        }
        frame = pa.table(features)
        numeric = [n for n in base.inputs if n in base.drift.numeric and n in features]
        categorical = [n for n in base.inputs if n in base.drift.categorical and n in features]
        drift = DriftReference.fit(
            frame, numeric=numeric, categorical=categorical, bins=self.config.bins
        )
        profiles = dict(drift.numeric)
        if "output" in table.column_names:
            profiles[PREDICTION] = NumericProfile.fit(table["output"], bins=self.config.bins)
        meta = {
            **base.meta,
            "source": {
                **base.meta.get("source", {}),
                "window": [window.start.isoformat(), window.end.isoformat()],
                "window_rows": table.num_rows,
            },
        }
        return MonitorReference(
            DriftReference(profiles, dict(drift.categorical), table.num_rows), meta
        )

    def fit_reference(self, model_version: str) -> MonitorReference:
        """Profiles of the version's training set and of its scores on the test split."""
        version = self._registry.get(model_version)
        if version.run_id is None:
            raise NotFoundError(
                f"model version {version.ref}: registered without a training run, so monitoring "
                "has no training data to use as the reference"
            )
        run = self._registry.get_run(version.run_id)
        job = run.job
        evaluation = version.evaluation or {}
        fingerprint = evaluation.get("training_set") or next(
            (fp for role, fp in run.datasets if role == "train"), None
        )
        if fingerprint is None:
            raise NotFoundError(
                f"model version {version.ref}: its run {run.id} recorded no training set"
            )
        table = self._features.get_training_set(str(fingerprint)).table
        inputs = [name for name in job.get("inputs", []) if name in table.column_names]
        if not inputs:
            raise SchemaError(
                f"model version {version.ref}: none of its inputs {job.get('inputs')} is a column "
                f"of training set {str(fingerprint)[:12]}"
            )
        numeric, categorical = column_kinds(table, inputs)
        bins = self.config.bins
        drift = DriftReference.fit(table, numeric=numeric, categorical=categorical, bins=bins)
        meta: dict[str, Any] = {
            "task": job.get("task"),
            "inputs": inputs,
            "label": job.get("label"),
            "source": {"training_set": fingerprint, "rows": table.num_rows, "run": run.id},
        }
        scores_profile = self._fit_outputs(model_version, table, inputs, job, evaluation, meta)
        numeric_profiles = dict(drift.numeric)
        if scores_profile is not None:
            numeric_profiles[PREDICTION] = scores_profile
        return MonitorReference(
            DriftReference(numeric_profiles, dict(drift.categorical), drift.rows), meta
        )

    def _fit_outputs(
        self,
        model_version: str,
        table: pa.Table,
        inputs: list[str],
        job: dict[str, Any],
        evaluation: dict[str, Any],
        meta: dict[str, Any],
    ) -> NumericProfile | None:
        """Score the held-out test split: the score profile, the reference metrics and,
        for classifiers, the calibration map."""
        frame = table.to_pandas()
        timestamp, label = job.get("timestamp"), job.get("label")
        test_start = (evaluation.get("split") or {}).get("test_start")
        if timestamp in frame.columns and test_start is not None:
            frame = frame[frame[timestamp] >= pd.Timestamp(test_start)]
        meta["source"]["reference_rows"] = len(frame)
        if frame.empty:
            return None
        scores = scores_array(
            self._registry.load(model_version).predict(frame[inputs].reset_index(drop=True))
        )
        profile = NumericProfile.fit(scores, bins=self.config.bins)
        if label not in frame.columns:
            return profile
        y = frame[label].to_numpy(dtype=np.float64, na_value=np.nan)
        if self.config.importance_weighted:
            meta["importance"] = _importance(
                self._registry.load(model_version).predict,
                frame[inputs].reset_index(drop=True),
                y,
                scores,
                meta["task"],
            )
        if meta["task"] == "classification":
            keep = np.isfinite(y) & np.isfinite(scores)
            meta["reference_metrics"] = classification_metrics(
                y[keep], scores[keep], threshold=self.config.classification_threshold
            )
            meta["reference_label_rate"] = float(np.mean(y[keep])) if keep.any() else None
            meta["reference_positive_rate"] = float(
                np.mean(scores >= self.config.classification_threshold)
            )
            meta["calibrator"] = Calibrator().fit(scores[keep], y[keep]).to_dict()
        else:
            keep = np.isfinite(y) & np.isfinite(scores)
            meta["reference_metrics"] = regression_metrics(y[keep], scores[keep])
        return profile

    def stored(self, *, endpoint: str | None = None) -> list[WindowReport]:
        """Every computed window (of ``endpoint``) with its stored results, in time order."""
        found = self.store.windows(endpoint=endpoint)
        results = self.store.results([w.id for w in found])
        return [WindowReport(w, results[w.id]) for w in found]

    # --- one pass -----------------------------------------------------------------------
    def endpoints(self) -> list[str]:
        """Endpoints with a prediction log."""
        if not self._predictions.is_dir():
            return []
        return sorted(
            p.name.partition("=")[2]
            for p in self._predictions.iterdir()
            if p.is_dir() and p.name.startswith("endpoint=")
        )

    def run(self, *, endpoint: str | None = None, progress: Progress | None = None) -> MonitorRun:
        """Compute every closed, new window and refresh the ones awaiting labels."""
        names = self.endpoints() if endpoint is None else [endpoint]
        now = ensure_utc(self._clock.now())
        outcome = MonitorRun()
        sent: list[Notification] = []
        self._moved = []
        for name in names:
            due, backlog = self.schedule.due(
                self._predictions, name, now, self.store.computed(name), self._moved
            )
            outcome.waiting.append(backlog)
            labels = LabelIndex(self._labels, name, self._moved)
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
        outcome.quarantined = [self._moved_dict(moved) for moved in self._moved]
        return outcome

    def _moved_dict(self, moved: QuarantinedFile) -> dict[str, str]:
        log_name = "labels" if moved.source.is_relative_to(self._labels) else "predictions"
        root = self._labels if log_name == "labels" else self._predictions
        return {
            "log": log_name,
            "endpoint": moved.source.relative_to(root).parts[0].partition("=")[2],
            "path": self._relative(moved.source),
            "quarantined_to": self._relative(moved.target),
            "reason": moved.reason,
        }

    def _relative(self, path: Path) -> str:
        return (
            path.relative_to(self._state_dir).as_posix()
            if path.is_relative_to(self._state_dir)
            else str(path)
        )

    def _quarantined(self, endpoint: str, window: Window) -> Result:
        """``log.quarantined_files``: the files of both logs of ``window``'s hours that
        lie in the quarantine (moved by this pass or an earlier one)."""
        files = [
            self._relative(path)
            for root in (self._predictions, self._labels)
            for path in quarantined_files(
                root, partition=endpoint, start=window.start, end=window.end
            )
        ]
        if not files:
            return emit("log", "quarantined_files", 0.0)
        return emit("log", "quarantined_files", float(len(files)), status="breach",
                    details={"files": files[:_LISTED_FILES]})  # fmt: skip

    def _compute(
        self, endpoint: str, window: Window, labels: LabelIndex, now: datetime
    ) -> list[WindowReport]:
        table = read_log(self._predictions, partition=endpoint, start=window.start, end=window.end,
                         quarantine=self._moved)  # fmt: skip
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
        for arm, model_version, shadow, part in groups(table):
            results = [*operational_checks(part, seconds), quarantine]
            status = "computed" if part.num_rows >= self.config.min_rows else "too_few_rows"
            label_rows = 0
            try:
                reference = self.reference(model_version, endpoint)
            except Exception as exc:  # a missing or broken reference: say so, keep the rest
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
                        select_group(earlier, arm, model_version, shadow),
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

    def _previous(self, endpoint: str, window: Window) -> tuple[datetime, pa.Table] | None:
        """With ``calibration = "recent"``: the start of the window just before this one
        (same length) and its records, for the calibration maps of its groups."""
        if self.config.calibration != "recent" or self.rows:
            return None
        before = self.span.add(window.start, -1)
        return before, self._label_records(endpoint, before, window.start)

    def _label_records(self, endpoint: str, start: datetime, end: datetime) -> pa.Table:
        """The records of ``[start, end)`` with just the columns label checks read."""
        segments = [FEATURE_PREFIX + name for name in self.config.segments]
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
        return read_log(
            self._predictions,
            partition=endpoint,
            start=start,
            end=end,
            columns=columns,
            quarantine=self._moved,
        )

    def _refresh(self, endpoint: str, labels: LabelIndex, now: datetime) -> list[WindowReport]:
        reports = []
        for stored in self.store.open_label_windows(endpoint):
            if stored.status == "empty" or not stored.model_version:
                continue
            final = now >= stored.end + self.label_horizon
            table = self._label_records(endpoint, stored.start, stored.end)
            part = select_group(table, stored.arm, stored.model_version, stored.shadow)
            try:
                reference = self.reference(stored.model_version, endpoint)
            except Exception:
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


def _importance(
    predict: Callable[[pd.DataFrame], Any],
    frame: pd.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    task: Any,
    *,
    rows: int = 5000,
    seed: int = 0,
) -> dict[str, float] | None:
    """Permutation importance of each input on (at most ``rows`` of) the test split: how
    much ROC-AUC (classifiers) or RMSE (regressors) worsens when the column is shuffled;
    negative effects count as 0. None when no column matters."""
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(frame))[:rows]
    frame, y, scores = frame.iloc[pick].reset_index(drop=True), y[pick], scores[pick]
    keep = np.isfinite(y)

    def quality(s: np.ndarray) -> float | None:
        if task == "classification":
            return classification_metrics(y[keep], s[keep])["roc_auc"]
        rmse = regression_metrics(y[keep], s[keep])["rmse"]
        return None if rmse is None else -rmse

    base = quality(scores)
    if base is None:
        return None
    out = {}
    for column in frame.columns:
        shuffled = frame.copy()
        shuffled[column] = shuffled[column].to_numpy()[rng.permutation(len(frame))]
        worse = quality(scores_array(predict(shuffled)))
        out[str(column)] = max(0.0, base - worse) if worse is not None else 0.0
    total = sum(out.values())
    return {k: v / total for k, v in out.items()} if total > 0 else None


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _updated(stored: StoredWindow, label_rows: int, final: bool) -> StoredWindow:
    return StoredWindow(**{**stored.__dict__, "label_rows": label_rows, "labels_final": final})
