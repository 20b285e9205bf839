"""Build an endpoint's routing table from its deployment: load each arm's model version
(SHA-256 verified by the registry), warm it up, and find the feature service it was
trained on. Models are shared between endpoints and tables, and closed once no table
uses them any more.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from prodml.core import ServingConfig
from prodml.features import FeatureService, FeatureStore
from prodml.registry import Deployment, DeploymentStore, ModelRegistry
from prodml.serving._bandit import BanditRouter
from prodml.serving._breaker import CircuitBreaker
from prodml.serving._endpoint import ArmState, EndpointTable
from prodml.serving._guardrails import ArmWindow
from prodml.serving._metrics import ServingMetrics
from prodml.serving._served import ServedModel

__all__ = ["TableBuilder"]

log = logging.getLogger("prodml.serving")

_GUARDED_POLICIES = frozenset({"canary", "ab", "bandit"})
_RELEASE_DELAY_S = 30.0  # a replaced model keeps its batcher this long for in-flight calls


async def _close_later(models: list[ServedModel], delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    for served in models:
        await served.close()


@dataclass(frozen=True)
class _Trained:
    """What :meth:`TableBuilder._trained_on` found (``problem``: why there is no
    feature service)."""

    problem: str | None
    service: FeatureService | None = None
    request_types: dict[str, str] = field(default_factory=dict)
    task: str | None = None


class TableBuilder:
    """Makes :class:`EndpointTable` objects; :meth:`build` runs in a worker thread."""

    def __init__(
        self,
        *,
        config: ServingConfig,
        registry: ModelRegistry,
        deployments: DeploymentStore,
        features: FeatureStore | None,
        executor: Executor,
        metrics: ServingMetrics,
        array_inputs: bool = False,
    ) -> None:
        self.config = config
        self.registry = registry
        self.deployments = deployments
        self.features = features
        self.executor = executor
        self.metrics = metrics
        self.array_inputs = array_inputs
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def model(self, ref: str) -> ServedModel:
        """The served model of a version, loaded and warmed on first use."""
        with self._lock:
            served = self._models.get(ref)
        if served is not None:
            return served
        try:
            loaded = self.registry.load(ref)
            served = ServedModel(
                loaded,
                config=self.config,
                executor=self.executor,
                metrics=self.metrics,
                array_inputs=self.array_inputs,
            )
            served.warm_up()
        except Exception:
            self.metrics.model_loads.labels(ref, "failed").inc()
            raise
        self.metrics.model_loads.labels(ref, "ok").inc()
        with self._lock:
            return self._models.setdefault(ref, served)

    def queue_depths(self) -> dict[str, int]:
        """Requests queued in each loaded model's micro-batcher."""
        with self._lock:
            return {ref: served.batcher.queued for ref, served in self._models.items()}

    def build(self, deployment: Deployment, previous: EndpointTable | None) -> EndpointTable:
        spec = deployment.spec
        arms: dict[str, ArmState] = {}
        for arm in spec.arms:
            served = self.model(arm.model)
            old = previous.arms.get(arm.name) if previous is not None else None
            if old is not None and old.model.ref == arm.model:
                breaker, window = old.breaker, old.window
            else:
                breaker = CircuitBreaker(self.config.breaker_failures, self.config.breaker_reset_s)
                window = None
            guarded = spec.policy in _GUARDED_POLICIES and arm.role in ("challenger", "arm")
            if guarded and window is None:
                window = ArmWindow(spec.guardrails.window_s)
            arms[arm.name] = ArmState(arm, served, breaker, window if guarded else None)
        trained = self._trained_on(deployment, arms)
        bandit = None
        if spec.policy == "bandit" and spec.bandit is not None:
            bandit = BanditRouter(
                deployment.endpoint, [a.name for a in spec.live_arms], spec.bandit, self.deployments
            )
        return EndpointTable(
            deployment,
            arms,
            trained.service,
            trained.problem,
            bandit,
            request_types=trained.request_types,
            task=trained.task,
        )

    def _trained_on(self, deployment: Deployment, arms: dict[str, ArmState]) -> _Trained:
        """What the primary arm's model was trained on: its task, the feature service
        (for native requests) and the dtypes its training set gave the entity keys and
        request fields."""
        spec = deployment.spec
        version = arms[(spec.champion or spec.live_arms[0]).name].model.version
        if version.run_id is None:
            return _Trained(f"model {version.ref} has no training run, so no feature service")
        try:
            run = self.registry.get_run(version.run_id)
        except Exception as exc:  # reported by native requests as the endpoint's problem
            return _Trained(f"training run of model {version.ref}: {exc}")
        job_task = run.job.get("task")
        task = job_task if isinstance(job_task, str) else None
        if self.features is None:
            return _Trained("this server has no feature store", task=task)
        if run.service_name is None:
            return _Trained(f"model {version.ref} was not trained on a feature service", task=task)
        try:
            service = self.features.service(run.service_name)
            dtypes: dict[str, str] = {}
            for fingerprint, role in run.datasets:
                if role == "train":
                    dtypes.update(self.features.datasets.column_dtypes(fingerprint))
        except Exception as exc:  # reported by native requests as the endpoint's problem
            return _Trained(f"feature service of model {version.ref}: {exc}", task=task)
        if run.service_version is not None and service.version != run.service_version:
            log.warning(
                "endpoint %s: model %s was trained on feature service %s version %s; the "
                "project defines version %s",
                deployment.endpoint,
                version.ref,
                service.name,
                run.service_version,
                service.version,
            )
        inputs = {i for odf in service.on_demand for i in odf.inputs}
        wanted = (set(service.join_keys) | inputs) - set(service.output_names)
        types = {name: dtype for name, dtype in dtypes.items() if name in wanted}
        return _Trained(None, service, types, task)

    async def release_unused(self, tables: Iterable[EndpointTable]) -> None:
        """Close models no table uses, after in-flight requests had time to finish."""
        used = {state.model.ref for table in tables for state in table.arms.values()}
        with self._lock:
            unused = [m for ref, m in self._models.items() if ref not in used]
            for served in unused:
                del self._models[served.ref]
        if unused:
            task = asyncio.create_task(_close_later(unused, _RELEASE_DELAY_S))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        for task in list(self._closing):
            task.cancel()
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for served in models:
            await served.close()
