"""``project.training``: one training job from labelled rows to a candidate version.

entity rows for the window → point-in-time training set (validated) → time split →
run recorded (params, seed, data, code, environment) → the user's function → the model
serialised and *reloaded from its bytes* (what is evaluated is exactly what is stored)
→ evaluation on the test split, per slice, latency, robustness suite → the champion
scored on the same rows → gate → registered as a pending version with its report.

Two optional steps (``[training] calibration`` and ``refit``, or the keywords of
:meth:`Training.train`): a classifier's probabilities are calibrated on the validation
split before evaluation (``_calibration``), and after the gate the training function
runs again on every row of the window, that model being the one registered
(``_refit``). The version's evaluation records both, and whether the model was trained
from scratch or warm-started from a parent version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from prodml.core import (
    Clock,
    Config,
    ConfigError,
    ModelNotFoundError,
    ProdMLError,
    SchemaError,
    TrainingError,
    ensure_utc,
)
from prodml.features import FeatureStore, TrainingSet
from prodml.registry import (
    ModelRegistry,
    ModelVersion,
    RunInfo,
    Signature,
    infer_signature,
)
from prodml.training._calibration import calibrate, check_calibration
from prodml.training._evaluate import EvaluationReport, evaluate, measure_performance
from prodml.training._gate import GateCheck, GateResult, judge
from prodml.training._leakage import LeakageReport, check_leakage
from prodml.training._refit import (
    Fitted,
    RefitResult,
    call_trainer,
    full_refit,
    serialized,
    set_seeds,
    trainer_data,
)
from prodml.training._robustness import (
    RobustnessResult,
    generated_cases,
    project_cases,
    run_robustness,
)
from prodml.training._split import TimeSplit, load_entity_rows, split_at, time_split
from prodml.training._trainer import TrainerSpec, load_trainer

__all__ = ["Training", "TrainingResult", "predictions_sha256", "set_seeds"]

Say = Callable[[str], None]
REFIT_MODES = ("none", "full")


@dataclass(frozen=True)
class TrainingResult:
    """What one training job produced."""

    run: RunInfo
    version: ModelVersion | None
    report: EvaluationReport
    gate: GateResult
    robustness: RobustnessResult
    champion: str | None
    champion_report: EvaluationReport | None
    training_set: str
    split: dict[str, Any]
    predictions_sha256: str
    training_set_warnings: tuple[str, ...] = ()
    leakage: LeakageReport | None = None
    refit: RefitResult | None = None
    calibration: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    artifact_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        report = self.report.to_dict()
        return {
            "run": self.run.id,
            "version": None if self.version is None else self.version.ref,
            "training_set": self.training_set,
            "split": self.split,
            "metrics": report["metrics"],
            "performance": report["performance"],
            "gate": self.gate.to_dict(),
            "robustness": self.robustness.to_dict(),
            "champion": self.champion,
            "champion_metrics": None
            if self.champion_report is None
            else self.champion_report.to_dict()["metrics"],
            "predictions_sha256": self.predictions_sha256,
            "training_set_warnings": list(self.training_set_warnings),
            "leakage": None if self.leakage is None else self.leakage.to_dict(),
            "refit": None if self.refit is None else self.refit.to_dict(),
            "calibration": self.calibration,
            "training": self.training,
            "artifact_sha256": self.artifact_sha256,
        }


def _binary_labels(column: str, labels: pd.Series) -> pd.Series:
    """Labels of a classification trainer as bools: a bool column, or numbers that are
    all 0 or 1. Anything else (strings, other numbers) is refused rather than cast, since
    ``astype(bool)`` would turn ``2``, ``0.3`` or ``"no"`` into ``True``."""
    if pd.api.types.is_bool_dtype(labels.dtype):
        return labels.astype(bool)
    if pd.api.types.is_numeric_dtype(labels.dtype):
        bad = labels[~labels.isin([0, 1])].unique()
        if len(bad) == 0:
            return labels.astype(bool)
        found = sorted(bad.tolist())[:5]
    else:
        found = sorted({str(value) for value in labels.head(1000)})[:5]
    raise SchemaError(
        f"training set column {column!r} (the label) of a classification trainer holds "
        f"{found} (dtype {labels.dtype}): expected binary labels, bool or 0/1 "
        "(compute the label as a bool, e.g. arr_delay > 15)"
    )


def predictions_sha256(scores: np.ndarray) -> str:
    """SHA-256 over the exact float64 bytes of the predictions."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype="float64").tobytes()).hexdigest()


class Training:
    """Runs training jobs for the project's ``@prodml.trainer``."""

    def __init__(
        self,
        *,
        root: Path,
        config: Config,
        features: FeatureStore,
        registry: ModelRegistry,
        clock: Clock,
    ) -> None:
        self.root = root
        self.config = config
        self.features = features
        self.registry = registry
        self.clock = clock

    def trainer(self) -> TrainerSpec:
        """The project's training function (re-imported: picks up edits)."""
        return load_trainer(self.root, self.config.training)

    def train(
        self,
        start: datetime,
        end: datetime,
        *,
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        parent: str | None = None,
        register: bool = True,
        actor: str | None = None,
        tags: Mapping[str, str] | None = None,
        say: Say | None = None,
        on_unmatched_view: Literal["warn", "error"] | None = None,
        refit: Literal["none", "full"] | None = None,
        calibration: Literal["none", "isotonic", "sigmoid"] | None = None,
    ) -> TrainingResult:
        """Train on labelled rows with ``start <= time < end`` and (by default) register
        the model as a pending candidate version with its evaluation and gate result.

        A feature view that gives no value to any row of the training set is reported in
        ``training_set_warnings`` (refused with ``on_unmatched_view="error"``; default
        ``[features] on_unmatched_view``). ``calibration`` (default ``[training]
        calibration``) wraps a classifier with a calibrator fitted on the validation
        split; ``refit="full"`` (default ``[training] refit``) registers, in place of
        the evaluated model, one refitted on every row of the window."""
        step: Say = say or (lambda _text: None)
        start, end = ensure_utc(start), ensure_utc(end)
        if start >= end:
            raise TrainingError(
                f"training window: start {start.isoformat()} is not before end "
                f"{end.isoformat()}; expected start < end (rows with start <= time < end)"
            )
        spec = self.trainer()
        refit_mode, method = self._modes(spec, refit, calibration)
        step(f"Loading labelled rows {start:%Y-%m-%d}–{end:%Y-%m-%d}")
        rows = load_entity_rows(
            spec.entity_rows,
            root=self.root,
            timestamp=spec.timestamp,
            start=start,
            end=end,
            owner=f"trainer {spec.qualname}",
        )
        step(f"Building the training set ({rows.num_rows:,} rows)")
        dataset = self.features.build_training_set(
            rows,
            spec.service,
            timestamp=spec.timestamp,
            label=spec.label,
            on_unmatched_view=on_unmatched_view,
        )
        frame = dataset.to_pandas()
        svc = self.features.service(spec.service)
        inputs = list(dict.fromkeys([*spec.inputs, *svc.output_names]))
        labels = self._labels(spec, frame)
        split = self._split(spec, frame[spec.timestamp], start, end)
        if method != "none" and not split.validation.any():
            raise TrainingError(
                f"calibration {method!r} of the model from {spec.qualname}: the time split "
                "has no validation rows ([training] validation_fraction = "
                f"{self.config.training.validation_fraction}); expected validation_fraction "
                "> 0 (the calibrator is fitted on the validation split)"
            )
        merged = {**spec.params, **(params or {})}
        seed = spec.seed if seed is None else int(seed)
        parent_model = None if parent is None else self.registry.load(parent)
        training = {
            "mode": "stateless" if parent_model is None else "warm_start",
            "parent": None if parent_model is None else parent_model.version.ref,
        }
        run = self.registry.start_run(
            spec.name,
            params=merged,
            seed=seed,
            service=(svc.name, svc.version),
            parent=None if parent_model is None else parent_model.version.ref,
            code_dir=self.root,
            tags={"trainer": spec.qualname, **(tags or {})},
        )
        with run:
            run.log_dataset(dataset.fingerprint, "train")
            run.set_job(
                start=start.isoformat(),
                end=end.isoformat(),
                trainer=spec.qualname,
                trainer_sha256=spec.source_sha256(),
                module=self.config.training.module,
                label=spec.label,
                timestamp=spec.timestamp,
                task=spec.task,
                inputs=inputs,
                split=split.to_dict(),
                recency_half_life_days=spec.recency_half_life_days,
                training=training,
            )
            step(f"Training {spec.qualname} on {split.sizes()['train']:,} rows (run {run.id})")
            context: dict[str, Any] = {
                "inputs": inputs,
                "params": merged,
                "seed": seed,
                "parent": None if parent_model is None else parent_model.model,
                "run": run,
            }
            data = trainer_data(spec, frame, labels, split.train, split.validation, **context)
            evaluated = call_trainer(spec, run, data)
            calibrated, calibration_info = None, None
            if method != "none":
                step(f"Calibrating ({method}) on {split.sizes()['validation']:,} validation rows")
                wrapped = calibrate(
                    evaluated.model, data.X_valid, data.y_valid, method=method, owner=spec.qualname
                )
                evaluated = serialized(wrapped, owner=f"the calibration of {spec.qualname}")
                calibrated = evaluated.model
                calibration_info = {"method": method, "rows": split.sizes()["validation"]}
            run.set_job(calibration=calibration_info)
            step("Evaluating on the test split, the robustness suite and the champion")
            outcome = self._evaluate(spec, frame, inputs, labels, split, evaluated, dataset)
            report, robustness, champion, champion_report, gate, scores, signature, leakage = (
                outcome
            )
            checksum = predictions_sha256(scores)
            run.log_metrics(report.metrics)
            run.log_metrics(report.performance)
            run.set_job(
                predictions_sha256=checksum, gate=gate.status, evaluated_sha256=evaluated.sha256
            )
            served, refitted = evaluated, None
            if refit_mode == "full":
                step(f"Refitting {spec.qualname} on all {len(frame):,} rows of the window")
                everything = np.ones(len(frame), dtype=bool)
                refitted = full_refit(
                    lambda rows: call_trainer(spec, run, rows, stage="refit"),
                    trainer_data(spec, frame, labels, everything, None, **context),
                    frame.loc[split.test, inputs].reset_index(drop=True),
                    evaluated=evaluated,
                    calibrated=calibrated,
                    owner=spec.qualname,
                )
                served = refitted.fitted
                run.log_artifact("evaluated_model", evaluated.artifact)
                run.log_metrics({"refit_rows": refitted.rows, "refit_seconds": refitted.seconds})
            run.set_job(
                refit=None if refitted is None else refitted.to_dict(),
                artifact_sha256=served.sha256,
            )
        info = self.registry.get_run(run.id)
        version = None
        report_json = report.to_dict()
        if register:
            step(f"Registering {spec.name} ({gate.status})")
            version = self.registry.register(
                spec.name,
                served.model,
                artifact=served.artifact,
                format=served.format.name,
                signature=signature,
                run_id=run.id,
                profile=orjson.loads(dataset.profile.to_json()),
                metrics={**report_json["metrics"], **report_json["performance"]},
                evaluation={
                    "test": report_json,
                    "champion": None
                    if champion_report is None
                    else {"version": champion, "report": champion_report.to_dict()},
                    "robustness": robustness.to_dict(),
                    "leakage": None if leakage is None else leakage.to_dict(),
                    "split": split.to_dict(),
                    "training_set": dataset.fingerprint,
                    "refit": None if refitted is None else refitted.to_dict(),
                    "calibration": calibration_info,
                    "training": training,
                },
                gate=gate.to_dict(),
                actor=actor,
            )
        return TrainingResult(
            run=info,
            version=version,
            report=report,
            gate=gate,
            robustness=robustness,
            champion=champion,
            champion_report=champion_report,
            training_set=dataset.fingerprint,
            split=split.to_dict(),
            predictions_sha256=checksum,
            training_set_warnings=dataset.warnings,
            leakage=leakage,
            refit=refitted,
            calibration=calibration_info,
            training=training,
            artifact_sha256=served.sha256,
        )

    # --- steps ------------------------------------------------------------------------
    @staticmethod
    def _labels(spec: TrainerSpec, frame: pd.DataFrame) -> pd.Series:
        labels = frame[spec.label]
        missing = int(labels.isna().sum())
        if missing:
            raise SchemaError(
                f"training set column {spec.label!r} (the label): {missing} of {len(labels)} "
                "rows are null; expected every row of the window to be labelled"
            )
        if spec.task == "classification":
            return _binary_labels(spec.label, labels)
        try:
            return labels.astype("float64")
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"training set column {spec.label!r} (the label) of a regression trainer has "
                f"dtype {labels.dtype}: expected numbers ({exc})"
            ) from exc

    def _split(
        self, spec: TrainerSpec, timestamps: pd.Series, start: datetime, end: datetime
    ) -> TimeSplit:
        """The time split: the latest ``test_fraction`` of rows, or (``[training]
        test_split = "champion"``) the rows after the last one the champion was fitted
        on, falling back to the fraction split with a note saying why."""
        config = self.config.training
        if config.test_split == "champion":
            cut, note = self._champion_cut(spec, start, end)
            if cut is not None:
                split = split_at(timestamps, cut, validation_fraction=config.validation_fraction)
                if split is not None:
                    return split
                note = (
                    f"the champion's data ends at {cut.isoformat()}, which leaves no "
                    "training or no test row in this window"
                )
        else:
            note = None
        split = time_split(
            timestamps,
            validation_fraction=config.validation_fraction,
            test_fraction=config.test_fraction,
        )
        return split if note is None else replace(split, note=note)

    def _champion_cut(
        self, spec: TrainerSpec, start: datetime, end: datetime
    ) -> tuple[pd.Timestamp | None, str]:
        """Where the champion's fitted data ends: its window's end when it was refitted
        on the whole window, else its own test split's start; None and why when there is
        no champion, no recorded window, or the cut falls outside ``(start, end)``."""
        try:
            version = self.registry.get(f"{spec.name}@champion")
        except ModelNotFoundError:
            return None, "no champion: the test_fraction split"
        job = {} if version.run_id is None else self.registry.get_run(version.run_id).job
        # Refitted: it learned from its whole window; else from the rows before its test.
        seen = job.get("end") if job.get("refit") else (job.get("split") or {}).get("test_start")
        if not seen:
            return None, f"champion {version.ref} has no recorded training window"
        cut = pd.Timestamp(seen)
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
        if not (pd.Timestamp(start) < cut < pd.Timestamp(end)):
            return None, (
                f"champion {version.ref}'s data ends at {cut.isoformat()}, outside this "
                f"window [{start.isoformat()}, {end.isoformat()})"
            )
        return cut, ""

    def _modes(
        self, spec: TrainerSpec, refit: str | None, calibration: str | None
    ) -> tuple[str, str]:
        """The refit mode and calibration method: the keywords, else ``[training]``."""
        config = self.config.training
        mode = config.refit if refit is None else refit
        if mode not in REFIT_MODES:
            source = "[training] refit" if refit is None else "train(refit=...)"
            raise ConfigError(
                f"{source} {mode!r}: expected one of {', '.join(map(repr, REFIT_MODES))}"
            )
        method = config.calibration if calibration is None else calibration
        source = "[training] calibration" if calibration is None else "train(calibration=...)"
        check_calibration(method, task=spec.task, owner=spec.qualname, source=source)
        return mode, method

    def _evaluate(
        self,
        spec: TrainerSpec,
        frame: pd.DataFrame,
        inputs: list[str],
        labels: pd.Series,
        split: TimeSplit,
        fitted: Fitted,
        dataset: TrainingSet,
    ) -> tuple[
        EvaluationReport,
        RobustnessResult,
        str | None,
        EvaluationReport | None,
        GateResult,
        np.ndarray,
        Signature,
        LeakageReport | None,
    ]:
        test = frame.loc[split.test].reset_index(drop=True)
        y_test = labels[split.test].to_numpy()
        X_test = test[inputs]
        fmt, artifact, loaded = fitted.format, fitted.artifact, fitted.model

        def predict(X: pd.DataFrame) -> np.ndarray:
            return fmt.predict(loaded, X)

        try:
            scores = predict(X_test)
        except Exception as exc:
            raise TrainingError(
                f"model from {spec.qualname} failed to predict on the test split: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        segments = self._segments(spec, test)
        kwargs: dict[str, Any] = {
            "task": spec.task,
            "segments": segments,
            "slice_min_rows": self.config.training.slice_min_rows,
        }
        report = evaluate(y_test, scores, **kwargs)
        report = report.with_performance(
            measure_performance(predict, X_test, load=lambda: fmt.load(artifact))
        )
        signature = infer_signature(X_test, scores)
        cases = generated_cases(signature, dataset.profile) + project_cases(
            self.root / self.config.training.robustness_dir, signature
        )
        robustness = run_robustness(predict, cases, task=spec.task)
        champion, champion_report, problem = self._score_champion(spec, test, y_test, kwargs)
        leakage = None
        if self.config.gate.leakage_check:
            leakage = check_leakage(
                frame.loc[split.train, inputs],
                labels[split.train].to_numpy(),
                X_test,
                y_test,
                task=spec.task,
                config=self.config.gate,
                views=dataset.coverage,
            )
        gate = judge(
            report,
            config=self.config.gate,
            champion=champion_report,
            champion_ref=champion,
            robustness_passed=robustness.passed,
            robustness_detail=robustness.detail,
            leakage=leakage,
        )
        if problem is not None:
            check = GateCheck(name="champion comparison", passed=False, detail=problem)
            gate = replace(gate, status="NOT_BLESSED", checks=(*gate.checks, check))
        return report, robustness, champion, champion_report, gate, scores, signature, leakage

    def _segments(self, spec: TrainerSpec, test: pd.DataFrame) -> pd.DataFrame | None:
        columns = spec.segments if spec.segments is not None else self.config.training.segments
        missing = [c for c in columns if c not in test.columns]
        if missing:
            declared = (
                f"@prodml.trainer(segments=...) of {spec.qualname}"
                if spec.segments is not None
                else "[training] segments"
            )
            raise SchemaError(
                f"segment columns {missing} (from {declared}) are not in the training set; "
                f"columns: {list(test.columns)}"
            )
        return test[list(columns)] if columns else None

    def _score_champion(
        self, spec: TrainerSpec, test: pd.DataFrame, y_test: np.ndarray, kwargs: dict[str, Any]
    ) -> tuple[str | None, EvaluationReport | None, str | None]:
        try:
            ref = self.registry.get(f"{spec.name}@champion").ref
        except ModelNotFoundError:
            return None, None, None
        try:
            champion = self.registry.load(ref)
        except ProdMLError as exc:  # a missing or corrupt artifact: this job can still gate
            return ref, None, f"champion {ref} could not be loaded: {exc}"
        try:
            scores = champion.predict(test)
        except ProdMLError as exc:
            return ref, None, f"champion {ref} cannot score the test split: {exc}"
        except Exception as exc:
            return (
                ref,
                None,
                f"champion {ref} failed on the test split: {type(exc).__name__}: {exc}",
            )
        return ref, evaluate(y_test, scores, **kwargs), None
