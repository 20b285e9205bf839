"""Layer 4, training: run the user's ``@prodml.trainer`` on a point-in-time training
set, evaluate the model (metrics, slices, latency, robustness, the champion on the same
rows), gate it, register it, and reproduce a registered version; optionally calibrate
a classifier on the validation split and refit on the whole window before registering.
"""

from __future__ import annotations

from prodml.training._evaluate import EvaluationReport, SliceResult, evaluate, measure_performance
from prodml.training._exact_time import EXACT_TIME_MIN_ROWS, ViewExactTime, check_exact_time
from prodml.training._gate import GateCheck, GateResult, Threshold, judge, parse_threshold
from prodml.training._job import Training, TrainingResult, predictions_sha256, set_seeds
from prodml.training._leakage import FeatureLeakage, LeakageReport, check_leakage
from prodml.training._metrics import (
    METRIC_DIRECTIONS,
    classification_metrics,
    expected_calibration_error,
    regression_metrics,
    reliability_curve,
)
from prodml.training._refit import RefitResult
from prodml.training._reproduce import ReproduceReport, reproduce
from prodml.training._robustness import (
    CaseResult,
    RobustnessCase,
    RobustnessResult,
    add_case,
    generated_cases,
    project_cases,
    run_robustness,
)
from prodml.training._split import TimeSplit, load_entity_rows, recency_weights, time_split
from prodml.training._trainer import TrainerSpec, TrainingData, load_trainer, trainer

__all__ = [
    "EXACT_TIME_MIN_ROWS",
    "METRIC_DIRECTIONS",
    "CaseResult",
    "EvaluationReport",
    "FeatureLeakage",
    "GateCheck",
    "GateResult",
    "LeakageReport",
    "RefitResult",
    "ReproduceReport",
    "RobustnessCase",
    "RobustnessResult",
    "SliceResult",
    "Threshold",
    "TimeSplit",
    "TrainerSpec",
    "Training",
    "TrainingData",
    "TrainingResult",
    "ViewExactTime",
    "add_case",
    "check_exact_time",
    "check_leakage",
    "classification_metrics",
    "evaluate",
    "expected_calibration_error",
    "generated_cases",
    "judge",
    "load_entity_rows",
    "load_trainer",
    "measure_performance",
    "parse_threshold",
    "predictions_sha256",
    "project_cases",
    "recency_weights",
    "regression_metrics",
    "reliability_curve",
    "reproduce",
    "run_robustness",
    "set_seeds",
    "time_split",
    "trainer",
]
