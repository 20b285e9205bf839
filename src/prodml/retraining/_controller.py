"""The retraining controller: one pass over the project's retraining policies.

For each policy the pass first finishes what earlier passes left (a job whose
controller died is *abandoned*; a failed job is retried up to ``retries`` times,
unless a person forces a job), then
checks the triggers (:mod:`~prodml.retraining._triggers`) — unless the ``cooldown``
since the last job has not passed or ``max_jobs`` jobs started within ``per`` — and,
when one fires, runs a recorded job:

``window`` (the data window and the training mode) → ``validate`` (the window's rows:
label present, enough labelled rows) → ``training_set``, ``train``,
``evaluate_and_gate``, ``refit``, ``register`` (as :meth:`~prodml.training.Training.train`
runs them: the point-in-time training set with its data validation, the fit, the
evaluation and gate against the champion, the refit; recorded as it reports them) → ``approve`` (a BLESSED candidate, when the policy auto-approves)
→ ``hand_off`` (the candidate goes to the rollout controller as the challenger of the
policy's rollout plan, which decides on live traffic whether it is promoted).

Every step is written to the job's record as it ends, with its duration and what it
found. A candidate the gate does not bless ends the job ``rejected``; any error ends it
``failed`` with the step and the reason; either raises one alert (an event in the
monitoring store and a warning in the ``prodml.alerts`` log: ``retraining_job_failed``
or ``retraining_candidate_rejected``). In every case the
champion keeps serving: nothing but the hand-off touches a deployment.

One controller acts per project at a time: the pass holds the ``retraining`` lease in
the metadata DB, renewed at every step and, while a job runs, every third of
``lease_s`` by a :class:`Heartbeat` thread (a long fit does not let it expire); a
second controller's pass raises :class:`~prodml.core.ConflictError` and does nothing. A controller killed mid-job leaves
its job ``running``; the next controller to take the lease marks it ``abandoned``
(the registry registers a version in one transaction, so no half-registered version is
left) and the policy may start again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prodml.core import Clock, ConfigError, ConflictError, NotFoundError, ProdMLError
from prodml.core._retraining_config import (
    RetrainingConfig,
    RetrainPolicyConfig,
    TriggerConfig,
)
from prodml.monitoring import MonitorStore
from prodml.registry import DeploymentStore, ModelRegistry
from prodml.retraining._store import JobStore, RetrainJob, Step
from prodml.retraining._triggers import Fired, TriggerCheck, rule_name, scope_of
from prodml.retraining._validate import validate_window
from prodml.storage import Lease, MetadataDB, default_holder
from prodml.training import Training, TrainingResult

__all__ = [
    "CONTROLLER",
    "FAILED_RULE",
    "LEASE",
    "REJECTED_RULE",
    "HandOff",
    "Heartbeat",
    "PolicyFailure",
    "Retraining",
]

LEASE = "retraining"
CONTROLLER = "retraining-controller"
#: The alert rule name of a failed job (one event per failed job).
FAILED_RULE = "retraining_job_failed"
#: The alert of a job whose candidate the gate did not bless (the champion serves on).
REJECTED_RULE = "retraining_candidate_rejected"
#: (endpoint, candidate version, rollout plan) → what the rollout controller did.
HandOff = Callable[[str, str, Mapping[str, Any]], Mapping[str, Any]]

log = logging.getLogger("prodml.retraining")
alerts = logging.getLogger("prodml.alerts")

#: What :meth:`Training.train` reports when a step starts → the job's step name.
_TRAIN_STEPS = (
    ("Building the training set", "training_set"),
    ("Training", "train"),
    ("Evaluating", "evaluate_and_gate"),
    ("Refitting", "refit"),
    ("Calibrating", "calibrate"),
    ("Registering", "register"),
)


@dataclass(frozen=True)
class PolicyFailure:
    """A policy whose pass failed before or outside a job (a trigger that cannot be
    evaluated, say): the other policies' passes went on."""

    policy: str
    error: ProdMLError

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "error": str(self.error), "type": type(self.error).__name__}  # fmt: skip


class Retraining:
    """The project's retraining policies and the controller that runs them."""

    def __init__(
        self,
        *,
        config: RetrainingConfig,
        db: MetadataDB,
        registry: ModelRegistry,
        deployments: DeploymentStore,
        training: Training,
        monitor: MonitorStore,
        clock: Clock,
        hand_off: HandOff | None = None,
        holder: str | None = None,
    ) -> None:
        self.config = config
        self._registry = registry
        self._deployments = deployments
        self._training = training
        self._monitor = monitor
        self._clock = clock
        self._hand_off = hand_off
        self.jobs = JobStore(db)
        self.triggers = TriggerCheck(monitor)
        self.holder = holder or default_holder()
        self._lease = Lease(db, LEASE, self.holder, ttl_s=config.lease_s, clock=clock)
        #: The policies whose last pass (:meth:`run_once`) failed outside a job.
        self.failures: list[PolicyFailure] = []

    # --- policies ---------------------------------------------------------------------
    def policy(self, name: str) -> RetrainPolicyConfig:
        for policy in self.config.policies:
            if policy.name == name:
                return policy
        raise NotFoundError(
            f"retraining policy {name!r} is not configured: expected one of "
            f"{[p.name for p in self.config.policies]} ([[retraining.policies]] in prodml.toml)"
        )

    # --- the pass ---------------------------------------------------------------------
    def run_once(
        self,
        policy: str | None = None,
        *,
        force: bool = False,
        actor: str = CONTROLLER,
        reason: str | None = None,
    ) -> list[RetrainJob]:
        """One pass over the policies (or ``policy``'s); ``force`` starts a job of each
        without waiting for a trigger (still under the lease), recorded with ``reason``
        (why a person started it). The jobs it ran; a policy whose pass fails outside a
        job (its triggers cannot be evaluated) is logged and listed in :attr:`failures`,
        and the other policies' passes go on."""
        chosen = [self.policy(policy)] if policy is not None else list(self.config.policies)
        if not self._lease.acquire():
            held = self._lease.current()
            who = "someone" if held is None else f"{held.holder} until {held.expires_at:%Y-%m-%d %H:%M:%S}"  # fmt: skip
            raise ConflictError(
                f"another retraining controller holds the project's lease ({who}); this pass "
                "did nothing — one controller acts at a time"
            )
        self._abandon_stale()
        ran = []
        self.failures = []
        for p in chosen:
            try:
                job = self._policy_pass(p, force=force, actor=actor, reason=reason)
            except ProdMLError as exc:  # one policy's failure costs that policy's pass
                log.error("retraining pass of policy %r failed: %s", p.name, exc)
                self.failures.append(PolicyFailure(p.name, exc))
                continue
            if job is not None:
                ran.append(job)
        return ran

    def release(self) -> None:
        self._lease.release()

    def _abandon_stale(self) -> None:
        """Jobs left running by a controller that lost the lease (it died mid-job)."""
        now = self._clock.now()
        for job in self.jobs.jobs(status="running"):
            job.status, job.finished_at = "abandoned", now
            job.error = "the controller running it stopped (its lease expired) mid-job"
            for step in job.steps:
                if step.get("status") == "running":
                    step["status"] = "abandoned"
            self.jobs.save(job)
            log.warning("retrain job %s of policy %r abandoned: %s", job.id, job.policy, job.error)

    def _policy_pass(self, policy: RetrainPolicyConfig, *, force: bool, actor: str, reason: str | None = None) -> RetrainJob | None:  # fmt: skip
        now = self._clock.now()
        history = self.jobs.jobs(policy=policy.name, limit=50)
        last = history[0] if history else None
        if force:  # a person's job (and reason) supersedes a pending retry
            why = "started by hand" if not reason else f"started by hand: {reason}"
            return self._run(policy, "manual", why, {}, 1, actor)
        if last is not None and last.status == "failed" and last.attempt <= policy.retries:
            return self._run(policy, last.trigger, f"retry of {last.id}: {last.reason}",
                             {**last.evidence, "retry_of": last.id}, last.attempt + 1, actor)  # fmt: skip
        blocked = self._blocked(policy, history, now)
        if blocked is not None:  # the triggers' windows wait: they are judged once it ends
            log.debug("policy %r: no trigger checked: %s", policy.name, blocked)
            return None
        fired = self._fired(policy, last, now)
        if fired is None:
            return None
        return self._run(policy, fired.kind, fired.reason, fired.evidence, 1, actor)

    def _blocked(self, policy: RetrainPolicyConfig, history: list[RetrainJob], now: datetime) -> str | None:  # fmt: skip
        if history and now - history[0].started_at < policy.cooldown:
            return f"the cooldown ({policy.cooldown}) since job {history[0].id} has not passed"
        if policy.max_jobs is not None:
            recent = [j for j in history if now - j.started_at < policy.per and j.attempt == 1]
            if len(recent) >= policy.max_jobs:
                return (
                    f"{len(recent)} jobs started within {policy.per} (max_jobs {policy.max_jobs})"
                )
        return None

    def _served(self, policy: RetrainPolicyConfig) -> str | None:
        """The version the policy's endpoint serves as champion (else the model's
        ``champion`` alias)."""
        if policy.endpoint is not None:
            try:
                spec = self._deployments.get(policy.endpoint).spec
            except NotFoundError:
                spec = None
            if spec is not None:
                for arm in spec.arms:
                    if arm.role == "champion":
                        return arm.model
        aliases = self._registry.aliases(policy.model)
        return f"{policy.model}:{aliases['champion']}" if "champion" in aliases else None

    def _fired(self, policy: RetrainPolicyConfig, last: RetrainJob | None, now: datetime) -> Fired | None:  # fmt: skip
        served = self._served(policy)
        since = None if last is None else last.started_at
        windows = None
        for index, trigger in enumerate(policy.triggers):
            if trigger.kind == "schedule":
                anchor = since
                if anchor is None and served is not None:
                    anchor = self._registry.get(served).created_at
                fired = _scheduled(trigger, anchor, now)
                if fired is not None:
                    return fired
                continue
            if policy.endpoint is None or served is None:
                continue
            if trigger.kind == "challenger":
                observed = self.triggers.leads(trigger, policy.endpoint, served, since, now)
                fired = self.triggers.check(
                    policy, index, trigger, windows=(), threshold=trigger.threshold or 0.0,
                    now=now, observed=observed,
                )  # fmt: skip
                if fired is not None:
                    return fired
                continue
            if windows is None:
                windows = self.triggers.windows(policy.endpoint, served, since, now)
            threshold = trigger.threshold
            if threshold is None:  # the champion's own test value, less the margin
                name = (trigger.metric or "").partition(".")[2]
                metrics = self._registry.get(served).metrics
                value = metrics.get(name)
                if not isinstance(value, int | float) or not math.isfinite(value):
                    raise ConfigError(
                        f"retraining policy {policy.name!r}, trigger {index} ({trigger.kind}): "
                        f"no threshold, and the champion {served} has no finite test {name!r} "
                        f"to derive it from (got {value!r}; its metrics: {sorted(metrics)}); "
                        "expected a threshold, or a metric the champion was evaluated on"
                    )
                threshold = float(value) - trigger.margin if trigger.direction == "below" else float(value) + trigger.margin  # fmt: skip
            fired = self.triggers.check(
                policy, index, trigger, windows=windows, threshold=threshold, now=now
            )
            if fired is not None:
                return fired
        return None

    # --- a job ------------------------------------------------------------------------
    def _run(
        self, policy: RetrainPolicyConfig, trigger: str, reason: str, evidence: dict[str, Any],
        attempt: int, actor: str,
    ) -> RetrainJob:  # fmt: skip
        now = self._clock.now()
        job = self.jobs.create(
            RetrainJob(
                id=JobStore.new_id(), policy=policy.name, model=policy.model,
                endpoint=policy.endpoint, trigger=trigger, reason=reason, evidence=evidence,
                status="running", attempt=attempt, started_at=now, actor=actor,
            )
        )  # fmt: skip
        self.triggers.reset(policy, now)
        log.info("retrain job %s of policy %r started: %s", job.id, policy.name, reason)
        runner = _JobRun(self, job)
        try:
            with Heartbeat(self._lease, interval_s=self.config.lease_s / 3):
                self._steps(policy, job, runner)
        except Exception as exc:  # any failure: recorded, alerted, the champion serves on
            runner.fail(exc)
            self._alert(job)
        return job

    def _steps(self, policy: RetrainPolicyConfig, job: RetrainJob, runner: _JobRun) -> None:
        runner.begin("window")
        champion = self._served(policy)
        start, end, mode, parent = self._window(policy, job, champion)
        job.window_start, job.window_end = start, end
        runner.done({"start": start.isoformat(), "end": end.isoformat(), "mode": mode,
                     "parent": parent, "champion": champion})  # fmt: skip
        runner.begin("validate")
        runner.done(validate_window(self._training, policy, start, end))
        runner.begin("training_set")
        result: TrainingResult = self._training.train(
            start, end, parent=parent, params=policy.params or None, actor=job.actor,
            tags={"retrain_job": job.id, "retrain_policy": policy.name, "training_mode": mode},
            say=runner.said,
        )  # fmt: skip
        version = result.version
        runner.done()
        runner.annotate(
            "evaluate_and_gate", {"gate": result.gate.status, "metrics": _metrics(result)}
        )
        job.candidate = None if version is None else version.ref
        if version is None or not result.gate.blessed:
            job.status = "rejected"
            job.error = "; ".join(result.gate.reasons) or "the gate did not bless the candidate"
            runner.finish()
            self._alert(job, REJECTED_RULE)
            return
        if policy.auto_approve:
            runner.begin("approve")
            self._registry.approve(
                version.ref, actor=job.actor, reason=f"retrain job {job.id}: BLESSED, auto-approved"
            )
            runner.done({"version": version.ref})
        if policy.rollout is not None and policy.endpoint is not None and self._hand_off is not None:  # fmt: skip
            runner.begin("hand_off")
            outcome = self._hand_off(policy.endpoint, version.ref, policy.rollout)
            runner.done(dict(outcome))
        job.status = "succeeded"
        runner.finish()

    def _window(
        self, policy: RetrainPolicyConfig, job: RetrainJob, champion: str | None
    ) -> tuple[datetime, datetime, str, str | None]:
        """The data window ``[start, end)``, stateful or stateless training, the parent."""
        end = job.started_at - policy.label_delay
        if policy.window == "expanding":
            assert policy.start is not None
            start = policy.start
        else:
            assert policy.window_days is not None
            try:
                start = end - timedelta(days=policy.window_days)
            except OverflowError:
                raise ConfigError(
                    f"retraining policy {policy.name!r}: window_days = {policy.window_days} "
                    f"reaches before the year 1 from {end:%Y-%m-%d}; expected a window of "
                    "days that fits the calendar"
                ) from None
        if start >= end:
            raise ConfigError(
                f"retraining policy {policy.name!r}: the data window [{start:%Y-%m-%d}, "
                f"{end:%Y-%m-%d}) is empty; expected start before the pass time less label_delay"
            )
        mode, parent = "stateless", None
        if policy.warm_start and champion is not None:
            recent = self.jobs.jobs(policy=policy.name, status="succeeded", limit=policy.full_retrain_every)  # fmt: skip
            modes = [j.evidence.get("training_mode") for j in recent]
            streak = 0
            for m in modes:
                if m != "warm_start":
                    break
                streak += 1
            if streak < policy.full_retrain_every - 1 and modes:
                mode, parent = "warm_start", champion
        job.evidence = {**job.evidence, "training_mode": mode}
        return start, end, mode, parent

    def _alert(self, job: RetrainJob, rule: str = FAILED_RULE) -> None:
        """One alert for a job that produced no servable candidate: an event in the
        monitoring store and a warning in the ``prodml.alerts`` log."""
        failed = next((s["name"] for s in job.steps if s.get("status") == "failed"), None)
        payload = {"job": job.id, "policy": job.policy, "model": job.model, "error": job.error,
                   "step": failed, "status": job.status, "candidate": job.candidate}  # fmt: skip
        now = self._clock.now()
        self._monitor.record_event(rule, scope_of(job.policy), "firing", now, payload, now)
        what = f"failed at step {failed}" if rule == FAILED_RULE else f"{job.candidate} rejected"
        alerts.warning(
            "ALERT %s policy=%s: retrain job %s %s: %s", rule, job.policy, job.id, what, job.error
        )

    # --- reading ----------------------------------------------------------------------
    def history(self, policy: str | None = None, *, limit: int = 50) -> list[RetrainJob]:
        if policy is not None:
            self.policy(policy)
        return self.jobs.jobs(policy=policy, limit=limit)

    def status(self) -> dict[str, Any]:
        """Per policy: the served champion, the last job, and the triggers' debounce
        states; and who holds the controller lease."""
        held = self._lease.current()
        policies = []
        for policy in self.config.policies:
            last = self.jobs.jobs(policy=policy.name, limit=1)
            states = [
                self._monitor.alert_state(rule_name(policy.name, i), scope_of(policy.name))
                for i in range(len(policy.triggers))
            ]
            policies.append(
                {
                    "policy": policy.name, "model": policy.model, "endpoint": policy.endpoint,
                    "champion": self._served(policy),
                    "last_job": last[0].to_dict() if last else None,
                    "triggers": [
                        {"kind": t.kind, "metric": t.metric,
                         "state": None if s is None else s.get("state")}
                        for t, s in zip(policy.triggers, states, strict=True)
                    ],
                }
            )  # fmt: skip
        return {
            "lease": None if held is None else {
                "holder": held.holder, "expires_at": held.expires_at.isoformat()},
            "policies": policies,
        }  # fmt: skip


def _scheduled(trigger: TriggerConfig, anchor: datetime | None, now: datetime) -> Fired | None:
    """A schedule's firing: ``every`` since ``anchor``, or the calendar month ``every``
    months after the anchor's (None: not yet)."""
    since_text = "ever" if anchor is None else f"{anchor:%Y-%m-%d %H:%M}"
    evidence: dict[str, Any] = {"since": None if anchor is None else anchor.isoformat()}
    if trigger.every_months is not None:
        months = trigger.every_months
        due = anchor is None or (now.year * 12 + now.month) - (anchor.year * 12 + anchor.month) >= months  # fmt: skip
        if due:
            return Fired("schedule", f"every {months} calendar month(s): no job since {since_text}",
                         {**evidence, "every_months": months})  # fmt: skip
        return None
    assert trigger.every is not None
    if anchor is None or now - anchor >= trigger.every:
        return Fired("schedule", f"every {trigger.every}: no job since {since_text}",
                     {**evidence, "every_s": trigger.every.total_seconds()})  # fmt: skip
    return None


def _metrics(result: TrainingResult) -> dict[str, Any]:
    keep = ("roc_auc", "log_loss", "ece", "brier", "rmse", "mae")
    return {k: v for k, v in result.report.metrics.items() if k in keep}


class Heartbeat:
    """Renews ``lease`` every ``interval_s`` seconds in a background thread while the
    ``with`` block runs, so that a step longer than the lease (a long fit) does not let
    another controller take over a job that is still running. A failed renewal (the
    lease was taken: this process stalled past it) is logged; the job's next step then
    stops with a :class:`ConflictError`."""

    def __init__(self, lease: Lease, *, interval_s: float) -> None:
        self._lease = lease
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="retraining-lease", daemon=True)
        self.renewals = 0

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                renewed = self._lease.renew()
            except Exception as exc:  # the DB is briefly unreachable: the next beat retries
                log.warning("renewing the retraining lease failed: %s", exc)
                continue
            if not renewed:
                log.error(
                    "the retraining lease was lost while a job ran; it stops at its next step"
                )
                return
            self.renewals += 1

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _JobRun:
    """Records a job's steps as they happen (and renews the lease at each)."""

    def __init__(self, owner: Retraining, job: RetrainJob) -> None:
        self.owner = owner
        self.job = job
        self.step: Step | None = None
        self.t0 = 0.0

    def begin(self, name: str) -> None:
        if self.step is not None:
            self.done()
        if not self.owner._lease.renew():
            raise ConflictError(
                f"retrain job {self.job.id}: the controller lost its lease before step {name!r}"
            )
        self.step = Step(name, self.owner._clock.now())
        self.t0 = time.perf_counter()
        self.job.steps.append(self.step.to_dict())
        self.owner.jobs.save(self.job)

    def said(self, text: str) -> None:
        """A progress line of the training job: a new step when it names one."""
        for prefix, name in _TRAIN_STEPS:
            if text.startswith(prefix):
                if self.step is None or self.step.name != name:
                    self.begin(name)
                return

    def done(self, detail: Mapping[str, Any] | None = None, status: str = "ok") -> None:
        if self.step is None:
            return
        self.step.seconds = time.perf_counter() - self.t0
        self.step.status = status
        if detail:
            self.step.detail.update(detail)
        self.job.steps[-1] = self.step.to_dict()
        self.step = None
        self.owner.jobs.save(self.job)

    def annotate(self, name: str, detail: Mapping[str, Any]) -> None:
        """Add ``detail`` to the recorded step ``name`` (its latest, once it ended)."""
        for step in reversed(self.job.steps):
            if step.get("name") == name:
                step.setdefault("detail", {}).update(detail)
                self.owner.jobs.save(self.job)
                return

    def finish(self) -> None:
        self.job.finished_at = self.owner._clock.now()
        self.owner.jobs.save(self.job)
        log.info("retrain job %s ended %s", self.job.id, self.job.status)

    def fail(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.step is not None:
            self.done({"error": reason}, status="failed")
        self.job.status, self.job.error = "failed", reason
        self.finish()
        log.error("retrain job %s of policy %r failed: %s", self.job.id, self.job.policy, reason)
