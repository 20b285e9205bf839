"""The log step of the request path: every record the server writes to the prediction
log passes here, a live answer (:meth:`PredictionRecorder.live`, called by the pipeline
once it has answered) and a shadow arm's answers (:class:`ShadowLog`, the sink each
shadow arm's batches write to from their worker thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from prodml.serving._endpoint import ArmState, EndpointTable
from prodml.serving._metrics import ServingMetrics
from prodml.serving._prediction import Prediction
from prodml.serving._predlog import PredictionLog
from prodml.serving._shadow import ShadowCall

__all__ = ["PredictionRecorder", "ShadowLog"]


class PredictionRecorder:
    """Writes the records of live and shadow predictions to one prediction log."""

    def __init__(self, log: PredictionLog, metrics: ServingMetrics) -> None:
        self.log = log
        self.metrics = metrics

    def live(
        self,
        prediction: Prediction,
        frame: pd.DataFrame,
        *,
        rows: Sequence[Mapping[str, Any]] | None,
        unit: str,
        latency_ms: float,
        protocol: str,
        entities: Mapping[str, Sequence[Any]] | None = None,
        feature_versions: Mapping[str, str] | None = None,
        freshness: Mapping[str, tuple[Sequence[float | None], Sequence[bool]]] | None = None,
    ) -> None:
        """Queue one record per row of an answered request (see
        :meth:`PredictionLog.record`)."""
        self.log.record(
            prediction, frame, rows=rows, unit=unit, latency_ms=latency_ms, protocol=protocol,
            entities=entities, feature_versions=feature_versions, freshness=freshness,
        )  # fmt: skip

    def shadow_sink(self, table: EndpointTable, shadow: ArmState) -> ShadowLog:
        """The sink of one shadow arm of one endpoint."""
        return ShadowLog(self, table, shadow)


class ShadowLog:
    """The sink of one shadow arm of one endpoint: log records written in the worker
    thread, breaker and counters settled once per batch on the event loop."""

    def __init__(
        self, recorder: PredictionRecorder, table: EndpointTable, shadow: ArmState
    ) -> None:
        metrics = recorder.metrics
        self.log = recorder.log
        self.endpoint = table.endpoint
        self.shadow = shadow
        self.ok = metrics.shadow.labels(table.endpoint, shadow.name, "ok")
        self.errors = metrics.shadow.labels(table.endpoint, shadow.name, "error")
        self.failures = metrics.arm_failures.labels(table.endpoint, shadow.name, "error")

    def write(
        self,
        calls: Sequence[ShadowCall],
        outputs: Sequence[np.ndarray | None],
        errors: Sequence[str | None],
        ended: float,
    ) -> None:
        self.log.record_shadows(
            endpoint=self.endpoint, arm=self.shadow.name, model=self.shadow.model.ref,
            calls=calls, outputs=outputs, errors=errors, ended=ended,
        )  # fmt: skip

    def settle(self, ok: int, failed: int) -> None:
        breaker = self.shadow.breaker
        if ok:
            self.ok.inc(ok)
            breaker.record_success()
        if failed:
            self.errors.inc(failed)
            self.failures.inc(failed)
            for _ in range(failed):
                breaker.record_failure()
