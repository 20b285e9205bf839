"""Fitting each model version's monitoring reference: the input and score profiles of its
training set and test split (or of a past window of an endpoint's log, with
``[monitoring] reference = "<start>/<end>"``), its reference metrics, calibration map
and, with ``importance_weighted``, the permutation importance of its inputs.

A reference is fitted on first use and stored (an artifact named in the metadata DB);
later passes load the stored one. Within a pass each model version is loaded once and
each reference window's log read once, however many endpoints or groups ask for them.

A reference that cannot be had raises one of :data:`REFERENCE_ERRORS`: the pass reports
it as ``reference.available`` and computes the rest of the window.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from prodml.core import Clock, MonitoringConfig
from prodml.core.errors import (
    ConfigError,
    DefinitionError,
    IntegrityError,
    NotFoundError,
    ProdMLError,
    SchemaError,
    StorageError,
    TrainingError,
)
from prodml.features import FeatureStore
from prodml.monitoring._drift import DriftReference
from prodml.monitoring._performance import Calibrator, classification_metrics, regression_metrics
from prodml.monitoring._records import RecordGroups
from prodml.monitoring._reference import PREDICTION, MonitorReference, column_kinds, scores_array
from prodml.monitoring._store import MonitorStore
from prodml.monitoring._windows import Window
from prodml.registry import LoadedModel, ModelRegistry
from prodml.stats import NumericProfile
from prodml.storage import ArtifactStore, features_in

__all__ = ["REFERENCE_ERRORS", "ReferenceFitter", "WindowReader", "reference_window"]

#: What a missing or broken reference raises: no version, run, training set or artifact
#: (:class:`NotFoundError`; so do records with no model version, answered by a
#: deployment's default response), a logged model version that is not a version
#: reference (:class:`DefinitionError`), inputs that are not columns of the training set
#: or a window without live predictions (:class:`SchemaError`, :class:`NotFoundError`), unreadable
#: or tampered bytes (:class:`StorageError`, :class:`IntegrityError`), a model format
#: that refuses to load (:class:`ConfigError`) and a model that fails to score its test
#: split (:class:`TrainingError`).
REFERENCE_ERRORS: tuple[type[ProdMLError], ...] = (
    NotFoundError,
    DefinitionError,
    SchemaError,
    StorageError,
    IntegrityError,
    ConfigError,
    TrainingError,
)

#: The prediction records of an endpoint's window, every column.
WindowReader = Callable[[str, Window], pa.Table]


def reference_window(config: MonitoringConfig) -> Window | None:
    """The log window ``[monitoring] reference`` names, or None for ``"training"``.

    >>> reference_window(MonitoringConfig(reference="2013-02-02/2013-02-03")).label
    '2013-02-02'
    >>> reference_window(MonitoringConfig()) is None
    True
    """
    if config.reference == "training":
        return None
    start, _, end = config.reference.partition("/")
    return Window(_utc(start), _utc(end))


class ReferenceFitter:
    """Each model version's reference, fitted and stored on first use, then loaded.

    ``read`` gives the records of a log window (for window references). References are
    kept for the fitter's life; loaded models only until :meth:`forget_models` (the end
    of a pass), so that a long-running watcher holds no model it no longer needs.
    """

    def __init__(
        self,
        *,
        config: MonitoringConfig,
        store: MonitorStore,
        artifacts: ArtifactStore,
        registry: ModelRegistry,
        features: FeatureStore,
        clock: Clock,
        read: WindowReader,
    ) -> None:
        self.config = config
        self._store = store
        self._artifacts = artifacts
        self._registry = registry
        self._features = features
        self._clock = clock
        self._read = read
        self._references: dict[str, MonitorReference] = {}
        self._models: dict[str, LoadedModel] = {}

    def forget_models(self) -> None:
        """Drop the models loaded so far (each is loaded again on its next use)."""
        self._models.clear()

    def reference(self, model_version: str, endpoint: str | None = None) -> MonitorReference:
        """The stored reference of ``model_version`` (on ``endpoint`` when ``[monitoring]
        reference`` is a past window of its log), fitted and stored on first use."""
        if not model_version:
            raise NotFoundError(
                "prediction records with no model_version (served without a model, e.g. by "
                "a deployment's default response) have no monitoring reference; expected a "
                "model version such as name:version"
            )
        window = reference_window(self.config)
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
        stored = self._store.reference(key)
        if stored is not None:
            reference = self._load(key, stored[0])
        else:
            reference = self.fit(model_version)
            if window is not None:
                reference = self._window_reference(reference, model_version, str(endpoint), window)
            digest = self._artifacts.put_bytes(reference.to_bytes())
            self._store.save_reference(
                key, digest, reference.meta.get("source", {}), self._clock.now()
            )
        self._references[key] = reference
        return reference

    def _load(self, key: str, digest: str) -> MonitorReference:
        data = self._artifacts.get_bytes(digest)
        try:
            return MonitorReference.from_bytes(data)
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
            # a readable archive of the wrong shape (another version's layout, an edit)
            raise StorageError(
                f"stored monitoring reference {key!r} (artifact {digest[:12]}) is not a "
                f"readable reference archive ({type(exc).__name__}: {exc})"
            ) from exc

    def _window_reference(
        self, base: MonitorReference, model_version: str, endpoint: str, window: Window
    ) -> MonitorReference:
        """``base`` (task, calibration, reference metrics from the training run) with the
        input and score profiles of the live records of ``window`` instead."""
        grouped = RecordGroups(self._read(endpoint, window))
        table = grouped.select(*grouped.live_arm(model_version))
        if table.num_rows == 0:
            raise NotFoundError(
                f"monitoring reference window {window.label} of endpoint {endpoint!r} holds no "
                f"live prediction of {model_version}"
            )
        logged = features_in(table.column_names)
        features = {name: table[logged[name]] for name in base.inputs if name in logged}
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

    def fit(self, model_version: str) -> MonitorReference:
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

        def predict(X: pd.DataFrame) -> np.ndarray:
            return self._score(model_version, X)

        X = frame[inputs].reset_index(drop=True)
        scores = predict(X)
        profile = NumericProfile.fit(scores, bins=self.config.bins)
        if label not in frame.columns:
            return profile
        y = frame[label].to_numpy(dtype=np.float64, na_value=np.nan)
        if self.config.importance_weighted:
            meta["importance"] = _importance(predict, X, y, scores, meta["task"])
        keep = np.isfinite(y) & np.isfinite(scores)
        if meta["task"] == "classification":
            meta["reference_metrics"] = classification_metrics(
                y[keep], scores[keep], threshold=self.config.classification_threshold
            )
            meta["reference_label_rate"] = float(np.mean(y[keep])) if keep.any() else None
            meta["reference_positive_rate"] = float(
                np.mean(scores >= self.config.classification_threshold)
            )
            meta["calibrator"] = Calibrator().fit(scores[keep], y[keep]).to_dict()
        else:
            meta["reference_metrics"] = regression_metrics(y[keep], scores[keep])
        return profile

    def _score(self, model_version: str, X: pd.DataFrame) -> np.ndarray:
        """The model's scores of ``X``; a model that fails raises :class:`TrainingError`."""
        model = self._models.get(model_version)
        if model is None:
            model = self._models[model_version] = self._registry.load(model_version)
        try:
            return scores_array(model.predict(X))
        except ProdMLError:
            raise
        except Exception as exc:  # the user's model: any error it raises is its failure
            raise TrainingError(
                f"model version {model_version} could not score its test split for the "
                f"monitoring reference ({type(exc).__name__}: {exc})"
            ) from exc


def _importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
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
        worse = quality(predict(shuffled))
        out[str(column)] = max(0.0, base - worse) if worse is not None else 0.0
    total = sum(out.values())
    return {k: v / total for k, v in out.items()} if total > 0 else None


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
