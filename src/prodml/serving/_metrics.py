"""Prometheus metrics of one server process, in a registry of its own (no module-level
singletons: two servers in one process, as in tests, never share counters); and
:class:`ResponseCounting`, the ASGI middleware every response passes through, which
counts it in ``prodml_responses_total`` and answers any exception a handler let through
with an ordinary error response (the connection stays usable). The ``error`` label is
:func:`~prodml.serving._errors.error_label`'s, from the one table of HTTP errors.

>>> metrics = ServingMetrics()
>>> metrics.requests.labels("delay", "champion", "ok", "").inc()
>>> b"prodml_requests_total" in metrics.render()[0]
True
>>> from prodml.core import DeploymentNotFoundError
>>> error_label(DeploymentNotFoundError("no such endpoint")), error_label(KeyError("x"))
('not_found', 'internal')
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from prodml.serving._errors import error_label

__all__ = ["ERROR_SCOPE_KEY", "ResponseCounting", "ServingMetrics", "error_label"]

#: Where an exception handler leaves :func:`error_label` of the error it answered.
ERROR_SCOPE_KEY = "prodml.error"

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
        self.responses = Counter(
            "prodml_responses",
            "Every HTTP response, by endpoint (a deployed one, else 'unknown'), route "
            "template, status code and error type ('' when none)",
            ["endpoint", "route", "code", "error"],
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


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: Answers an exception no handler took: ``(exception, scope) -> (status, headers, body)``.
ErrorAnswer = Callable[[Exception, Scope], tuple[int, list[tuple[bytes, bytes]], bytes]]

_ENDPOINT_PARAMS = ("name", "model_name", "endpoint")


class ResponseCounting:
    """ASGI middleware: count every HTTP response by endpoint, route, status and error
    type, and answer an exception that escaped the handlers with ``answer`` (a 500 the
    client can read, on a connection that stays open). Labels are bounded: the endpoint
    is one of ``endpoints()`` or ``unknown``, the route a template of the app's routes or
    ``unmatched``, the error one of :func:`error_label`'s."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        endpoints: Callable[[], Collection[str]],
        answer: ErrorAnswer,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        except Exception as exc:
            if status:  # the answer had begun: the connection has to close
                self._count(scope, 500, error_label(exc))
                raise
            code, headers, body = self.answer(exc, scope)
            scope[ERROR_SCOPE_KEY] = error_label(exc)
            await send({"type": "http.response.start", "status": code, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            status.append(code)
        self._count(scope, status[0] if status else 500, scope.get(ERROR_SCOPE_KEY, ""))

    def _count(self, scope: Scope, code: int, error: str) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None)
        self.metrics.responses.labels(
            self._endpoint(scope),
            path if isinstance(path, str) else "unmatched",
            str(code),
            error if code >= 400 else "",
        ).inc()

    def _endpoint(self, scope: Scope) -> str:
        params = scope.get("path_params") or {}
        name = next((params[k] for k in _ENDPOINT_PARAMS if k in params), None)
        known = self.endpoints()
        if name is None and scope.get("route") is not None:
            text = scope.get("query_string", b"")
            name = dict(parse_qsl(text.decode("latin-1"))).get("endpoint") if text else None
            if name is None and getattr(scope["route"], "path", "") == "/invocations":
                name = next(iter(known)) if len(known) == 1 else None
        return name if isinstance(name, str) and name in known else "unknown"
