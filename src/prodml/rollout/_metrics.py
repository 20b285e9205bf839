"""The metrics an experiment is judged on, named once: what each one reads and which
direction is better, and a guardrail's non-inferiority margin.

A **primary** metric is a model metric on labelled rows (``log_loss``, ``brier``,
``accuracy``, ``roc_auc``) or a business metric from feedback rewards (``reward``). A
**guardrail** is any primary metric or an operational one computed from every request
(``error_rate``, ``fallback_rate``, ``p99_latency_ms``, ``mean_latency_ms``) or the
challenger's prediction distribution against the champion's (``prediction_shift``).

>>> METRICS["log_loss"].higher_is_better, METRICS["error_rate"].source
(False, 'request')
>>> Guardrail("p99_latency_ms", 0.2, relative=True).allowance(50.0)
10.0
>>> metric_info("auc")
Traceback (most recent call last):
...
prodml.core.errors.DefinitionError: metric 'auc' is unknown: expected one of 'log_loss', 'brier', 'accuracy', 'roc_auc', 'reward', 'error_rate', 'fallback_rate', 'p99_latency_ms', 'mean_latency_ms', 'prediction_shift'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prodml.core import DefinitionError

__all__ = [
    "GUARDRAIL_METRICS",
    "METRICS",
    "PRIMARY_METRICS",
    "Guardrail",
    "MetricInfo",
    "metric_info",
]

Source = Literal["label", "reward", "request", "shift"]


@dataclass(frozen=True)
class MetricInfo:
    """A metric's ``name``, what it reads (``label``: labelled rows; ``reward``: rows with
    a feedback reward; ``request``: every live record; ``shift``: outputs against the
    champion's) and whether higher is better."""

    name: str
    source: Source
    higher_is_better: bool
    doc: str


METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo("log_loss", "label", False, "mean binary log loss of the score"),
        MetricInfo("brier", "label", False, "mean squared error of the score"),
        MetricInfo("accuracy", "label", True, "share of labels the thresholded score gets right"),
        MetricInfo("roc_auc", "label", True, "area under the ROC curve"),
        MetricInfo("reward", "reward", True, "mean feedback reward"),
        MetricInfo("error_rate", "request", False, "share of records with status error"),
        MetricInfo("fallback_rate", "request", False, "share of records answered by fallback"),
        MetricInfo("p99_latency_ms", "request", False, "99th percentile latency (ms)"),
        MetricInfo("mean_latency_ms", "request", False, "mean latency (ms)"),
        MetricInfo(
            "prediction_shift", "shift", False, "PSI of the arm's scores against the champion's"
        ),
    )
}
PRIMARY_METRICS = tuple(name for name, m in METRICS.items() if m.source in ("label", "reward"))
GUARDRAIL_METRICS = tuple(METRICS)


def metric_info(name: str, *, allowed: tuple[str, ...] = GUARDRAIL_METRICS) -> MetricInfo:
    """The metric called ``name``; :class:`DefinitionError` naming the allowed ones."""
    if name not in allowed:
        raise DefinitionError(
            f"metric {name!r} is unknown: expected one of " + ", ".join(map(repr, allowed))
        )
    return METRICS[name]


@dataclass(frozen=True)
class Guardrail:
    """The challenger may be worse than the champion on ``metric`` by at most ``margin``
    (in the metric's units, or with ``relative`` a share of the champion's value). For
    ``prediction_shift`` the margin bounds the shift itself."""

    metric: str
    margin: float
    relative: bool = False

    def __post_init__(self) -> None:
        metric_info(self.metric)
        margin = self.margin
        if isinstance(margin, bool) or not isinstance(margin, int | float):
            raise DefinitionError(
                f"guardrail {self.metric!r}: margin must be a number >= 0, got {margin!r}"
            )
        if not math.isfinite(margin) or margin < 0:
            raise DefinitionError(
                f"guardrail {self.metric!r}: margin must be a finite number >= 0, got {margin!r}"
            )
        object.__setattr__(self, "margin", float(margin))
        if not isinstance(self.relative, bool):  # the text "false" is truthy
            raise DefinitionError(
                f"guardrail {self.metric!r}: relative must be true or false, got {self.relative!r}"
            )

    @property
    def info(self) -> MetricInfo:
        return METRICS[self.metric]

    def allowance(self, champion_value: float | None) -> float | None:
        """How much worse the challenger may be, in the metric's units (None: a relative
        margin with no champion value yet)."""
        if not self.relative:
            return self.margin
        if champion_value is None or not math.isfinite(champion_value):
            return None
        return self.margin * abs(champion_value)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "margin": self.margin, "relative": self.relative}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Guardrail:
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise DefinitionError(f"guardrail is malformed: {exc}") from None
