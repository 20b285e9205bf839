"""Prometheus metrics of one server process, in a registry of its own (no module-level
singletons: two servers in one process, as in tests, never share counters).

>>> metrics = ServingMetrics()
>>> metrics.requests.labels("delay", "champion", "ok", "").inc()
>>> b"prodml_requests_total" in metrics.render()[0]
True
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["ServingMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)
_AGE_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)


class ServingMetrics:
    """Every metric the server exports at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "prodml_requests",
            "Prediction requests by endpoint, arm, status and error type",
            ["endpoint", "arm", "status", "error"],
            registry=r,
        )
        self.latency = Histogram(
            "prodml_request_latency_seconds",
            "Time to answer a prediction request, by endpoint and arm",
            ["endpoint", "arm"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_latency = Histogram(
            "prodml_model_latency_seconds",
            "Time a model call took (one micro-batch), by model version",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "prodml_batch_rows",
            "Rows per micro-batch sent to a model",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.arm_failures = Counter(
            "prodml_arm_failures",
            "Failed arm calls by endpoint, arm and kind (error, timeout, circuit_open, bad_output)",
            ["endpoint", "arm", "kind"],
            registry=r,
        )
        self.fallbacks = Counter(
            "prodml_fallbacks",
            "Requests answered by the champion or the default response after an arm failed",
            ["endpoint", "to"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "prodml_breaker_open",
            "1 while an arm's circuit breaker is open",
            ["endpoint", "arm"],
            registry=r,
        )
        self.shadow = Counter(
            "prodml_shadow_predictions",
            "Shadow predictions by endpoint, arm and status",
            ["endpoint", "arm", "status"],
            registry=r,
        )
        self.guardrail_trips = Counter(
            "prodml_guardrail_trips",
            "Arms taken out of traffic by a guardrail",
            ["endpoint", "arm"],
            registry=r,
        )
        self.missing_entities = Counter(
            "prodml_missing_entities",
            "Requested entities with no row in a feature view's online store, by endpoint and view",
            ["endpoint", "view"],
            registry=r,
        )
        self.violations = Counter(
            "prodml_contract_violations",
            "Input contract violations by endpoint, column and kind",
            ["endpoint", "column", "kind"],
            registry=r,
        )
        self.model_loads = Counter(
            "prodml_model_loads",
            "Model versions loaded (verified and warmed) by status",
            ["model", "status"],
            registry=r,
        )
        self.feature_age = Histogram(
            "prodml_feature_age_seconds",
            "Age of online feature values served, by feature view",
            ["view"],
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.feature_stale = Counter(
            "prodml_feature_stale",
            "Online feature values past their TTL (served as null), by feature view",
            ["view"],
            registry=r,
        )
        self.idempotent_replays = Counter(
            "prodml_idempotent_replays",
            "Retried requests answered from the idempotency cache",
            ["endpoint"],
            registry=r,
        )
        self.feedback = Counter(
            "prodml_feedback",
            "Labels and rewards received, by endpoint and whether a decision was matched",
            ["endpoint", "matched"],
            registry=r,
        )
        self.deployment_revision = Gauge(
            "prodml_deployment_revision",
            "Deployment revision this process serves, by endpoint",
            ["endpoint"],
            registry=r,
        )
        self.batch_queue = Gauge(
            "prodml_batch_queue_depth",
            "Requests waiting for a model's micro-batcher, by model version",
            ["model"],
            registry=r,
        )
        self.log_queue = Gauge(
            "prodml_log_queue_depth", "Records waiting to be written", ["log"], registry=r
        )
        self.log_dropped = Gauge(
            "prodml_log_dropped",
            "Records dropped because the log queue was full (total since start)",
            ["log"],
            registry=r,
        )
        self.log_saturated = Gauge(
            "prodml_log_saturated",
            "1 while the log queue is at least 90% full",
            ["log"],
            registry=r,
        )
        self._collect_hooks: list[Callable[[], None]] = []

    def on_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before every scrape (to refresh gauges read from elsewhere)."""
        self._collect_hooks.append(hook)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        for hook in self._collect_hooks:
            hook()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
