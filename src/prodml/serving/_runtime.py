"""The serving runtime of one process: routing tables per endpoint, kept in step with the
deployments in the metadata DB, and the route and predict steps of the request path —
route, call the arm under its breaker and timeout, fall back to the champion and then to
the default response, mirror to shadows off the response path, enforce guardrails. The
rest of the request path (idempotency, features, checks, logging) is ``_pipeline``'s.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from prodml.core import (
    BadOutputError,
    CircuitOpenError,
    Clock,
    DeploymentNotFoundError,
    IntegrityError,
    ModelTimeoutError,
    ServingConfig,
    ServingError,
)
from prodml.features import FeatureStore
from prodml.registry import Deployment, DeploymentStore, ModelRegistry
from prodml.serving._endpoint import ArmState, EndpointTable, Route
from prodml.serving._fast_input import silence_feature_name_warning
from prodml.serving._metrics import ServingMetrics
from prodml.serving._prediction import Prediction
from prodml.serving._predlog import PredictionLog
from prodml.serving._recording import PredictionRecorder
from prodml.serving._served import NonFiniteOutputError
from prodml.serving._shadow import ShadowCall
from prodml.serving._tables import TableBuilder
from prodml.serving._wire import FieldProblem, RequestInvalid
from prodml.storage import MetadataDB
from prodml.validation import RowViolation

__all__ = ["ServingRuntime"]

log = logging.getLogger("prodml.serving")

_GUARD_CHECK_S = 0.25  # a guarded arm's window is checked at most this often
_INTEGRITY_TTL_S = 10.0  # /readyz re-runs the metadata DB's quick_check at most this often
_SUSPECT = frozenset({"out_of_range", "non_finite"})  # inputs that may overflow a model
_UNTAKEABLE = frozenset({"null_rate", "non_finite"})  # inputs a model may refuse to take


class ServingRuntime:
    """Everything a server process holds; one per process, created by the app."""

    def __init__(
        self,
        *,
        config: ServingConfig,
        registry: ModelRegistry,
        deployments: DeploymentStore,
        features: FeatureStore | None,
        clock: Clock,
        predictions: PredictionLog,
        metrics: ServingMetrics | None = None,
        own_process: bool = False,
        metadata: MetadataDB | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.deployments = deployments
        self.features = features
        self.clock = clock
        self.log = predictions
        self.metrics = metrics or ServingMetrics()
        self.recorder = PredictionRecorder(self.log, self.metrics)
        self.executor = ThreadPoolExecutor(config.prediction_threads, "prodml-predict")
        self.builder = TableBuilder(
            config=config,
            registry=registry,
            deployments=deployments,
            features=features,
            executor=self.executor,
            metrics=self.metrics,
            array_inputs=own_process,
        )
        self.tables: dict[str, EndpointTable] = {}
        self.metrics.on_collect(self._collect)
        self.actor = f"server@{socket.gethostname()}"
        self._watch_task: asyncio.Task[None] | None = None
        self._bandit_task: asyncio.Task[None] | None = None
        self.ready = False
        self.own_process = own_process
        self.last_refresh_error: str | None = None
        # The metadata DB whose consistency /readyz checks, and the last check's
        # (monotonic time, verdict): see _metadata_integrity.
        self.metadata = metadata
        self._integrity: tuple[float, str] | None = None

    def _collect(self) -> None:
        """Refresh the gauges read from elsewhere before a scrape."""
        metrics = self.metrics
        for ref, depth in self.builder.queue_depths().items():
            metrics.batch_queue.labels(ref).set(depth)
        for name, writer in (("predictions", self.log.predictions), ("labels", self.log.labels)):
            stats = writer.stats
            metrics.log_queue.labels(name).set(stats.queued)
            metrics.log_dropped.labels(name).set(stats.dropped)
            metrics.log_saturated.labels(name).set(stats.queued >= 0.9 * writer.max_queue)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every deployment, then keep watching for changes."""
        if self.own_process:
            silence_feature_name_warning()  # before models load: see _fast_input
        await self.refresh()
        if self.own_process:
            # Everything loaded so far (libraries, models) lives as long as the process:
            # keep it out of the cyclic GC, whose full passes over it stalled requests.
            gc.collect()
            gc.freeze()
        self.ready = True
        self._watch_task = asyncio.create_task(self._watch(), name="prodml-deployment-watch")
        self._bandit_task = asyncio.create_task(self._sync_bandits(), name="prodml-bandit-sync")

    async def close(self) -> None:
        """Stop watching, let shadows finish, sync bandits, flush logs."""
        self.ready = False
        for task in (self._watch_task, self._bandit_task):
            if task is not None:
                task.cancel()
        await self._sync_bandits_once("at shutdown")
        await self.builder.close_all()  # queued shadow calls are answered and logged
        self.executor.shutdown(wait=True)
        self.log.close(timeout=self.config.shutdown_timeout_s)

    async def refresh(self) -> list[str]:
        """Bring every table up to its deployment's revision; return endpoints changed.

        New tables are built (models loaded, verified and warmed) in a worker thread and
        swapped in one assignment each; a table that fails to build keeps the old one
        serving and the error is logged and kept in :attr:`last_refresh_error`."""
        loop = asyncio.get_running_loop()
        revisions = await loop.run_in_executor(None, self.deployments.revisions)
        changed: list[str] = []
        for endpoint, revision in sorted(revisions.items()):
            current = self.tables.get(endpoint)
            if current is not None and current.revision == revision:
                continue
            try:
                deployment = await loop.run_in_executor(None, self.deployments.get, endpoint)
                table = await loop.run_in_executor(None, self.builder.build, deployment, current)
            except Exception as exc:
                self.last_refresh_error = f"endpoint {endpoint!r} revision {revision}: {exc}"
                log.error("cannot apply deployment: %s", self.last_refresh_error)
                continue
            self.tables[endpoint] = table
            self.metrics.deployment_revision.labels(endpoint).set(table.revision)
            changed.append(endpoint)
            log.info("endpoint %s now serves revision %d", endpoint, table.revision)
        for endpoint in set(self.tables) - set(revisions):
            del self.tables[endpoint]
            changed.append(endpoint)
        if changed:
            await self.builder.release_unused(self.tables.values())
        return changed

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.watch_interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # the watcher must outlive a database hiccup
                self.last_refresh_error = str(exc)
                log.warning("deployment watch failed: %s", exc)

    async def _sync_bandits(self) -> None:
        while True:
            await asyncio.sleep(self.config.bandit_sync_s)
            await self._sync_bandits_once()

    async def _sync_bandits_once(self, when: str = "") -> None:
        """Sync every bandit endpoint's posterior; a failure is logged and retried later."""
        loop = asyncio.get_running_loop()
        for table in list(self.tables.values()):
            if table.bandit is None:
                continue
            try:
                await loop.run_in_executor(None, table.bandit.sync)
            except Exception as exc:
                log.warning("endpoint %s: bandit sync failed %s: %s", table.endpoint, when, exc)

    def check_stores(self) -> dict[str, str]:
        """Reach every store the request path needs: ``"ok"`` or the error, per store
        (call it from a worker thread)."""
        status: dict[str, str] = {}
        try:
            self.deployments.revisions()
            status["metadata"] = self._metadata_integrity()
        except Exception as exc:
            status["metadata"] = f"{type(exc).__name__}: {exc}"
        services = [t.service for t in self.tables.values() if t.service is not None]
        if services and self.features is not None:
            view = services[0].projections[0].view if services[0].projections else None
            try:
                if view is not None:
                    self.features.online.read(
                        view.online_namespace, [("__ready__",) * len(view.join_keys)],
                        [], now=self.clock.now(), ttl=None,
                    )  # fmt: skip
                status["online_store"] = "ok"
            except Exception as exc:
                status["online_store"] = f"{type(exc).__name__}: {exc}"
        return status

    def _metadata_integrity(self) -> str:
        """The metadata DB's quick check, ``"ok"`` or the error (SQLite ``quick_check``:
        ~2 ms on a demo-sized file, ~0.2 s at 50 MB), re-run at most every
        :data:`_INTEGRITY_TTL_S` so frequent probes stay cheap."""
        if self.metadata is None:
            return "ok"
        now = time.monotonic()
        if self._integrity is None or now - self._integrity[0] >= _INTEGRITY_TTL_S:
            try:
                self.metadata.ensure_intact()
                verdict = "ok"
            except IntegrityError as exc:
                verdict = f"{type(exc).__name__}: {exc}"
            self._integrity = (now, verdict)
        return self._integrity[1]

    # -- lookups --------------------------------------------------------------------------
    def table(self, endpoint: str) -> EndpointTable:
        table = self.tables.get(endpoint)
        if table is None:
            known = ", ".join(sorted(self.tables)) or "none"
            raise DeploymentNotFoundError(
                f"no such endpoint is deployed on this server: expected one of {known}"
            )
        return table

    def only_endpoint(self) -> EndpointTable:
        """The single deployed endpoint (for protocols without an endpoint in the path)."""
        if len(self.tables) != 1:
            known = ", ".join(sorted(self.tables)) or "none"
            raise DeploymentNotFoundError(
                f"this server has {len(self.tables)} endpoints ({known}): name one with the "
                "'endpoint' query parameter or POST /v1/endpoints/{name}/invocations"
            )
        return next(iter(self.tables.values()))

    # -- the request path: route and predict ----------------------------------------------
    async def predict(
        self,
        table: EndpointTable,
        frame: pd.DataFrame,
        *,
        request_id: str,
        unit: str,
        stratum: str | None = None,
        arm: str | None = None,
        violations: Sequence[RowViolation] = (),
        native: bool = False,
    ) -> Prediction:
        """Route ``frame`` and answer it, falling back as the deployment allows; mirror
        it to the route's shadows."""
        now = self.clock.now()
        if arm is None:
            route = table.route(unit, request_id, now, stratum)
        else:
            route = Route(table.arms[arm], ())
        state = route.arm
        suspect = tuple(v for v in violations if v.kind in _SUSPECT or v.kind in _UNTAKEABLE)
        for shadow in route.shadows:
            self._mirror(table, shadow, frame, request_id, unit, state.name)
        try:
            scores = await self._call(table, state, frame, native, suspect)
            return Prediction(
                request_id, table.endpoint, state.name, state.model.ref, scores, "ok",
                route.propensity, violations=tuple(violations), role=state.arm.role,
                stratum=stratum,
            )  # fmt: skip
        except ServingError as first:
            failure = first
        champion = table.champion
        if champion is not None and champion is not state and arm is None:
            try:
                scores = await self._call(table, champion, frame, native, suspect)
                self.metrics.fallbacks.labels(table.endpoint, "champion").inc()
                return Prediction(
                    request_id, table.endpoint, champion.name, champion.model.ref, scores,
                    "fallback", route.propensity, state.name, tuple(violations),
                    role=champion.arm.role, stratum=stratum,
                )  # fmt: skip
            except ServingError as second:
                failure = second
        default = table.deployment.spec.default_response
        if default is None:
            raise ServingError(
                f"endpoint {table.endpoint!r}: arm {state.name!r} failed ({failure}) and no "
                "default_response is deployed"
            )
        self.metrics.fallbacks.labels(table.endpoint, "default").inc()
        scores = np.array(
            [default] * len(frame), dtype=object if isinstance(default, str | list | dict) else None
        )
        return Prediction(
            request_id, table.endpoint, "default", None, scores, "degraded",
            route.propensity, state.name, tuple(violations), stratum=stratum,
        )  # fmt: skip

    async def _call(
        self,
        table: EndpointTable,
        state: ArmState,
        frame: pd.DataFrame,
        native: bool = False,
        suspect: Sequence[RowViolation] = (),
    ) -> np.ndarray:
        """One arm call under its breaker and timeout; outcomes feed breaker and guardrail.

        Non-finite output for inputs outside the training range, and a model raising on
        nulls or non-finite inputs it never saw in training (``suspect``: the request's
        soft violations), are the request's fault, not the arm's: a 422 naming those
        columns, and no breaker failure (or one client's extreme values or nulls could
        open the champion's breaker)."""
        breaker = state.breaker
        if not breaker.allow():
            self.metrics.arm_failures.labels(table.endpoint, state.name, "circuit_open").inc()
            # a request the arm could not take is an error of the arm: an open breaker
            # must not hide a broken canary from its guardrail
            self._observe(table, state, False, 0.0, throttled=True)
            raise CircuitOpenError(
                f"endpoint {table.endpoint!r}: arm {state.name!r} circuit breaker is open"
            )
        started = time.perf_counter()
        timeout_s = table.deployment.spec.timeout_ms / 1000.0
        try:
            scores = await state.model.predict(frame, timeout_s=timeout_s, native=native)
        except Exception as exc:
            blamed = _request_fault(exc, suspect)
            if blamed:
                raise RequestInvalid.of(
                    [FieldProblem(v.column, v.kind, v.message) for v in blamed], status=422
                ) from None
            breaker.record_failure()
            kind = (
                "timeout" if isinstance(exc, ModelTimeoutError)
                else "bad_output" if isinstance(exc, BadOutputError)
                else "error"
            )  # fmt: skip
            self.metrics.arm_failures.labels(table.endpoint, state.name, kind).inc()
            self.metrics.breaker_state.labels(table.endpoint, state.name).set(
                1 if breaker.state == "open" else 0
            )
            self._observe(table, state, False, (time.perf_counter() - started) * 1000)
            if isinstance(exc, ServingError):
                raise
            log.warning(  # the type only: a model's message may quote the request's values
                "endpoint %s arm %s: model %s raised %s",
                table.endpoint,
                state.name,
                state.model.ref,
                type(exc).__name__,
            )
            log.debug("endpoint %s arm %s: model failure", table.endpoint, state.name, exc_info=exc)
            raise ServingError(
                f"endpoint {table.endpoint!r}: model {state.model.ref} raised {type(exc).__name__}"
            ) from exc
        recovering = breaker.consecutive_failures > 0
        breaker.record_success()
        if recovering:  # a half-open trial succeeded (or a failure streak ended)
            self.metrics.breaker_state.labels(table.endpoint, state.name).set(0)
        if state.window is not None:
            self._observe(table, state, True, (time.perf_counter() - started) * 1000)
        return scores

    def _observe(
        self,
        table: EndpointTable,
        state: ArmState,
        ok: bool,
        latency_ms: float,
        *,
        throttled: bool = False,
    ) -> None:
        """Record one call in the arm's guardrail window; check the window at most every
        ``_GUARD_CHECK_S`` unless the call failed (and is not ``throttled``)."""
        window = state.window
        if window is None or state.tripped:
            return
        now = time.monotonic()
        window.record(now, ok, latency_ms)
        if now - state.checked_at < _GUARD_CHECK_S and (ok or throttled):
            return
        state.checked_at = now
        reason = window.check(now, table.deployment.spec.guardrails)
        if reason is not None:
            self._trip(table, state, reason)

    def _trip(self, table: EndpointTable, state: ArmState, reason: str) -> None:
        """Take an arm out of traffic now, here, and record it for every replica."""
        state.tripped = True
        weights = {n: w for n, w in table.weights.items() if n != state.name}
        if not weights and table.champion is not None:
            weights = {table.champion.name: 1.0}
        table.set_weights(weights)
        self.metrics.guardrail_trips.labels(table.endpoint, state.name).inc()
        message = f"guardrail: arm {state.name!r} ({state.model.ref}) set to weight 0: {reason}"
        log.warning("ALERT endpoint %s: %s", table.endpoint, message)
        loop = asyncio.get_running_loop()
        loop.run_in_executor(None, self._record_trip, table.endpoint, state.name, message)

    def _record_trip(self, endpoint: str, arm: str, reason: str) -> Deployment | None:
        try:
            return self.deployments.set_weights(
                endpoint, {arm: 0.0}, actor=self.actor, reason=reason, action="guardrail"
            )
        except Exception as exc:
            log.error("endpoint %s: could not record guardrail trip: %s", endpoint, exc)
            return None

    def _mirror(
        self,
        table: EndpointTable,
        shadow: ArmState,
        frame: pd.DataFrame,
        request_id: str,
        unit: str,
        live_arm: str,
    ) -> None:
        """Queue ``frame`` for a shadow arm (mirroring ``live_arm``'s request): no task, no timeout, no callback of its own;
        its batch logs the output. A full shadow queue (a hanging shadow) costs dropped
        mirrors, counted, never memory or latency."""
        sink = shadow.shadow_sink
        if sink is None:
            sink = shadow.shadow_sink = self.recorder.shadow_sink(table, shadow)
        call = ShadowCall(frame, request_id, unit, time.perf_counter(), sink, live_arm)
        if not shadow.breaker.allow():
            self.metrics.arm_failures.labels(table.endpoint, shadow.name, "circuit_open").inc()
            # logged, but not settled: an open breaker is not a new failure of the arm
            sink.write([call], [None], ["CircuitOpenError"], call.started)
            self.metrics.shadow.labels(table.endpoint, shadow.name, "error").inc()
            return
        if not shadow.model.mirror(call):
            self.metrics.shadow.labels(table.endpoint, shadow.name, "dropped").inc()


def _request_fault(exc: Exception, suspect: Sequence[RowViolation]) -> tuple[RowViolation, ...]:
    """The request's violations a failed model call is blamed on (see
    :meth:`ServingRuntime._call`); empty when the failure is the arm's own: a timeout,
    output of the wrong shape, or an error on inputs the training data had."""
    if isinstance(exc, NonFiniteOutputError):
        return tuple(v for v in suspect if v.kind in _SUSPECT)
    if isinstance(exc, ServingError):
        return ()
    return tuple(v for v in suspect if v.kind in _UNTAKEABLE)
