"""``prodml reproduce name:3``: rebuild a version's training set from its lineage, rerun
its training function with the recorded params and seed in the current environment,
and compare — data fingerprint, predictions checksum, metrics, environment, code.

The verdict ``match`` means the same data gave bit-identical predictions and equal
metrics; environment and code differences are listed either way, since they explain
a mismatch (or show that the result survived them).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prodml.core import DatasetNotFoundError, StateError
from prodml.registry import diff_code, diff_environments
from prodml.training._job import Training, TrainingResult

__all__ = ["ReproduceReport", "reproduce"]

#: Metrics that measure the machine, not the model: never compared.
MACHINE_METRICS = frozenset(
    {"latency_p50_ms", "latency_p99_ms", "throughput_rows_per_s", "model_memory_bytes"}
)


@dataclass(frozen=True)
class ReproduceReport:
    """The outcome of reproducing one version."""

    version: str
    run: str
    rerun: str
    match: bool
    data: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run": self.run,
            "rerun": self.rerun,
            "match": self.match,
            "differences": {
                "data": self.data,
                "predictions": self.predictions,
                "metrics": self.metrics,
                "code": self.code,
                "environment": self.environment,
            },
        }


def reproduce(
    training: Training,
    ref: str,
    *,
    say: Callable[[str], None] | None = None,
    tolerance: float = 0.0,
) -> ReproduceReport:
    """Rerun the job behind ``ref`` and report what matches and what differs."""
    registry = training.registry
    version = registry.get(ref)
    if version.run_id is None:
        raise StateError(
            f"model version {version.ref} has no training run (source {version.source!r}); "
            "only versions trained by prodml can be reproduced"
        )
    run = registry.get_run(version.run_id)
    job = run.job
    if "start" not in job or "predictions_sha256" not in job:
        raise StateError(
            f"run {run.id} of {version.ref} did not record a complete training job "
            f"(status {run.status}); it cannot be reproduced"
        )
    result = training.train(
        datetime.fromisoformat(job["start"]),
        datetime.fromisoformat(job["end"]),
        params=run.params,
        seed=run.seed,
        parent=run.parent_version,
        register=False,
        tags={"reproduces": version.ref},
        say=say,
    )
    recorded_data = [fp for fp, role in run.datasets if role == "train"]
    data = _data_differences(training, recorded_data, result)
    predictions = []
    if result.predictions_sha256 != job["predictions_sha256"]:
        predictions.append(
            f"predictions sha256 {job['predictions_sha256'][:16]}… → "
            f"{result.predictions_sha256[:16]}… on the test split"
        )
    metrics = _metric_differences(version.metrics, result.report.metrics, tolerance)
    # The rerun recorded the current code, environment and training function itself.
    rerun = result.run
    code = diff_code(run.code, rerun.code) if run.code else []
    current_sha = rerun.job.get("trainer_sha256")
    if job.get("trainer_sha256") != current_sha:
        code.append(
            f"training function {job.get('trainer')} source sha256 "
            f"{str(job.get('trainer_sha256'))[:16]}… → {str(current_sha)[:16]}…"
        )
    environment = diff_environments(run.environment, rerun.environment)
    return ReproduceReport(
        version=version.ref,
        run=run.id,
        rerun=result.run.id,
        match=not (data or predictions or metrics),
        data=data,
        predictions=predictions,
        metrics=metrics,
        code=code,
        environment=environment,
    )


def _data_differences(training: Training, recorded: list[str], result: TrainingResult) -> list[str]:
    if result.training_set in recorded:
        return []
    out = [
        f"training set fingerprint {(recorded or ['none'])[0][:16]}… → {result.training_set[:16]}…"
    ]
    if not recorded:
        return out
    try:
        old = training.features.get_training_set(recorded[0])
    except DatasetNotFoundError:
        return [*out, "the recorded training-set snapshot is no longer stored"]
    new = training.features.get_training_set(result.training_set)
    if old.num_rows != new.num_rows:
        out.append(f"rows {old.num_rows:,} → {new.num_rows:,}")
    for name in sorted(set(old.feature_versions) | set(new.feature_versions)):
        before, after = old.feature_versions.get(name), new.feature_versions.get(name)
        if before != after:
            out.append(f"feature {name} version {str(before)[:12]} → {str(after)[:12]}")
    if old.num_rows == new.num_rows:
        out.extend(
            f"column {column!r} values changed"
            for column in old.table.column_names
            if column in new.table.column_names and not old.table[column].equals(new.table[column])
        )
    return out


def _metric_differences(
    recorded: dict[str, Any], current: dict[str, float], tolerance: float
) -> list[str]:
    out = []
    for name in sorted(set(recorded) | set(current)):
        if name in MACHINE_METRICS:
            continue
        before, after = recorded.get(name), current.get(name)
        a = math.nan if before is None else float(before)
        b = math.nan if after is None else float(after)
        if math.isnan(a) and math.isnan(b):
            continue
        if math.isnan(a) or math.isnan(b) or abs(a - b) > tolerance:
            out.append(f"{name}: {a:.6g} → {b:.6g}")
    return out
