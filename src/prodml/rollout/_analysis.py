"""Experiment analysis over the logs: :func:`analyze_experiment` reads an endpoint's
prediction records and the labels and rewards that answer them, and judges each live
challenger against the champion on a primary metric and on guardrails, with sample-ratio
mismatch, segments, the effect over time, shadow arms compared on the same requests and
the bandit's posteriors.

The reading and joining is columnar (:mod:`~prodml.rollout._analysis_data`: Arrow and
DuckDB); the statistics are :mod:`prodml.stats`' (:mod:`~prodml.rollout._analysis_compare`
says which one judges what). Everything the analysis finds is in the returned
:class:`ExperimentAnalysis`; :meth:`ExperimentAnalysis.to_dict` gives it as JSON-ready
data (non-finite floats become None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from prodml.core.errors import ConfigError, DefinitionError
from prodml.rollout._analysis_compare import Comparison, compare
from prodml.rollout._analysis_data import ArmKey, ExperimentRows, read_experiment
from prodml.rollout._analysis_metrics import MetricTable
from prodml.rollout._analysis_views import (
    Bucket,
    bandit_view,
    bucket_width,
    over_time,
    paired_views,
    segment_view,
    srm_view,
)
from prodml.rollout._metrics import PRIMARY_METRICS, Guardrail, metric_info
from prodml.stats._metrics import check_alpha, check_threshold
from prodml.storage import LogStores, QuarantinedFile

__all__ = ["ArmSummary", "ExperimentAnalysis", "analyze_experiment", "json_ready"]


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data: non-finite floats None, NumPy scalars Python ones,
    datetimes ISO 8601 text, tuples lists, objects with ``to_dict`` their dicts.

    >>> json_ready({"a": (1.5, float("nan")), "b": np.int64(2)})
    {'a': [1.5, None], 'b': 2}
    """
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class ArmSummary:
    """One arm (live, or ``shadow``): what its records hold and its primary metric
    (``metric``: n, value, per-row mean and variance, standard error — for ROC-AUC the
    AUC and its DeLong variance)."""

    arm: str
    shadow: bool
    role: str | None
    model_versions: tuple[str, ...]
    records: int
    requests: int
    units: int
    labelled: int
    rewards: int
    errors: int
    fallbacks: int
    error_rate: float
    fallback_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    metric: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class ExperimentAnalysis:
    """An experiment on ``endpoint`` over its records' time range ``[start, end]``
    (first and last record), judged on ``metric``: the arms, one :class:`Comparison`
    per live challenger, SRM, per-segment effects (challenger → segments), the effect
    over time, paired shadow comparisons and the bandit view."""

    endpoint: str
    start: datetime
    end: datetime
    metric: str
    higher_is_better: bool
    alpha: float
    champion: str
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[Comparison, ...]
    srm: dict[str, Any] | None = None
    segments: dict[str, Any] | None = None
    over_time: list[dict[str, Any]] = field(default_factory=list)
    paired: list[dict[str, Any]] = field(default_factory=list)
    bandit: dict[str, Any] | None = None

    def comparison(self, arm: str) -> Comparison:
        """The comparison of challenger ``arm``; :class:`DefinitionError` if none."""
        for found in self.comparisons:
            if found.arm == arm:
                return found
        raise DefinitionError(
            f"experiment on {self.endpoint!r}: no comparison for arm {arm!r}; "
            f"expected one of {[c.arm for c in self.comparisons]}"
        )

    def arm(self, name: str, *, shadow: bool = False) -> ArmSummary:
        """The summary of arm ``name`` (its shadow records' with ``shadow``)."""
        for found in self.arms:
            if found.arm == name and found.shadow == shadow:
                return found
        raise DefinitionError(
            f"experiment on {self.endpoint!r}: no {'shadow ' if shadow else ''}arm {name!r}; "
            f"expected one of {[(a.arm, a.shadow) for a in self.arms]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (non-finite floats None, times ISO 8601)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out: dict[str, Any] = json_ready(data)
        return out


def _champion(rows: ExperimentRows, champion: str | None) -> int:
    live = rows.live
    names = [rows.arms[i].name for i in live]
    if champion is not None:
        key = ArmKey(champion)
        if key not in rows.arms:
            raise DefinitionError(
                f"champion {champion!r} has no live records in the range: expected one of {names}"
            )
        return rows.code_of(key)
    if not live:
        raise DefinitionError(
            "champion: the records hold only shadow arms "
            f"{[a.name for a in rows.arms]}: expected a live arm"
        )
    labelled = [i for i in live if rows.arm_roles[rows.arms[i]] == "champion"]
    candidates = labelled or live
    return max(candidates, key=lambda i: (rows.arm_records[rows.arms[i]], -i))


def _summaries(table: MetricTable, metric: str) -> tuple[ArmSummary, ...]:
    rows = table.rows
    arms = len(rows.arms)
    errors = np.bincount(rows.code[rows.error], minlength=arms)
    fallbacks = np.bincount(rows.code[~rows.own], minlength=arms)
    labelled = np.bincount(table.selected("_labelled").code, minlength=arms)
    rewards = np.bincount(table.selected("reward").code, minlength=arms)
    return tuple(
        _summary(table, code, metric, int(errors[code]), int(fallbacks[code]),
                 int(labelled[code]), int(rewards[code]))
        for code in range(arms)
    )  # fmt: skip


def _summary(
    table: MetricTable, code: int, metric: str, errors: int, fallbacks: int, labelled: int,
    rewards: int,
) -> ArmSummary:  # fmt: skip
    key = table.rows.arms[code]
    counts = table.rows.counts[key]
    latency = table.latency(code)
    return ArmSummary(
        arm=key.name,
        shadow=key.shadow,
        role=counts.role,
        model_versions=counts.model_versions,
        records=counts.records,
        requests=counts.requests,
        units=counts.units,
        labelled=labelled,
        rewards=rewards,
        errors=errors,
        fallbacks=fallbacks,
        error_rate=errors / counts.records,
        fallback_rate=fallbacks / counts.records,
        latency_p50_ms=latency["p50"],
        latency_p95_ms=latency["p95"],
        latency_p99_ms=latency["p99"],
        latency_mean_ms=latency["mean"],
        metric=table.per_arm(metric)[code].to_dict(),
    )


def _check_arguments(
    metric: str, alpha: float, min_effect: float, planned_n: int | None, threshold: float,
    bucket: str, guardrails: Sequence[Guardrail],
) -> None:  # fmt: skip
    metric_info(metric, allowed=PRIMARY_METRICS)
    check_alpha(alpha)
    check_threshold(threshold)
    bucket_width(bucket)  # type: ignore[arg-type]
    if not (isinstance(min_effect, int | float) and math.isfinite(min_effect) and min_effect >= 0):
        raise ConfigError(f"min_effect: expected a finite number >= 0, got {min_effect!r}")
    if planned_n is not None and (
        isinstance(planned_n, bool) or not isinstance(planned_n, int) or planned_n < 1
    ):
        raise ConfigError(f"planned_n: expected a per-arm row count >= 1, got {planned_n!r}")
    for g in guardrails:
        if not isinstance(g, Guardrail):
            raise ConfigError(f"guardrails: expected Guardrail objects, got {g!r}")


def analyze_experiment(
    logs: LogStores,
    endpoint: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    champion: str | None = None,
    metric: str = "log_loss",
    guardrails: Sequence[Guardrail] = (),
    expected_weights: Mapping[str, float] | None = None,
    srm_start: datetime | None = None,
    segment_by: str | None = None,
    bucket: Bucket = "day",
    alpha: float = 0.05,
    min_effect: float = 0.0,
    planned_n: int | None = None,
    threshold: float = 0.5,
    quarantine: list[QuarantinedFile] | None = None,
) -> ExperimentAnalysis:
    """Analyse the experiment on ``endpoint`` over the records in ``[start, end)``.

    ``champion`` is an arm name (default: the live arm whose records have the role
    ``champion``, else the one with most records); ``metric`` a primary metric
    (:data:`~prodml.rollout.PRIMARY_METRICS`); ``expected_weights`` the live arms'
    intended split for the SRM check, counted on distinct units since ``srm_start``;
    ``segment_by`` a prediction-log column (``stratum``, ``feature.origin``,
    ``entity.carrier`` …); ``min_effect`` the smallest improvement that matters, in the
    metric's units; ``planned_n`` the planned labelled rows per arm, which tunes the
    sequential test (pass the same value at every look); ``threshold`` the score from
    which a prediction counts as positive (accuracy).

    Raises :class:`DefinitionError` for an unknown metric, segment column or champion,
    :class:`~prodml.core.errors.NotFoundError` when the range holds no record, and
    :class:`~prodml.core.errors.SchemaError` when a model metric meets labels that are
    not 0/1 (or, for log loss and Brier, outputs outside [0, 1]).
    """
    guardrails = tuple(guardrails)
    _check_arguments(metric, alpha, min_effect, planned_n, threshold, bucket, guardrails)
    extra = (segment_by,) if segment_by is not None else ()
    with read_experiment(
        logs, endpoint, start=start, end=end, srm_start=srm_start,
        extra_columns=extra, quarantine=quarantine,
    ) as rows:  # fmt: skip
        table = MetricTable(rows, endpoint=endpoint, threshold=threshold, alpha=alpha)
        champ = _champion(rows, champion)
        challengers = [code for code in rows.live if code != champ]
        comparisons = tuple(
            compare(table, champ, code, metric=metric, guardrails=guardrails, alpha=alpha,
                    min_effect=min_effect, planned_n=planned_n)
            for code in challengers
        )  # fmt: skip
        segments = None
        if segment_by is not None:
            segments = {
                rows.arms[code].name: segment_view(table, metric, segment_by, champ, code, alpha)
                for code in challengers
            }
        over = over_time(table, metric, champ, challengers, bucket, alpha)
        paired, bandit = paired_views(table, alpha, threshold), bandit_view(table)
        times = rows.time_us
        return ExperimentAnalysis(  # last: the arms' distinct counts, from a second thread
            endpoint=endpoint,
            start=_datetime(int(times.min())),
            end=_datetime(int(times.max())),
            metric=metric,
            higher_is_better=metric_info(metric).higher_is_better,
            alpha=alpha,
            champion=rows.arms[champ].name,
            arms=_summaries(table, metric),
            comparisons=comparisons,
            srm=srm_view(rows, expected_weights),
            segments=segments,
            over_time=over,
            paired=paired,
            bandit=bandit,
        )


def _datetime(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
