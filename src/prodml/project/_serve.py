"""Wire a project's stores into a serving app (``prodml serve``, tests, benchmarks).

The admin API gains the controllers' commands as :class:`~prodml.serving.AdminAction` s:
the rollout controller's at ``/v1/admin/rollouts/{endpoint}/...`` and the retraining
controller's at ``/v1/admin/retraining/{policy}/...``.

``app_from_env`` is the factory uvicorn imports in each worker process when
``prodml serve --workers N`` runs more than one: the project directory arrives in
``PRODML_SERVE_PROJECT``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from prodml.core import Clock, ConflictError, DefinitionError, ProjectNotFoundError, StateError
from prodml.project._project import Project
from prodml.serving import AdminAction, PredictionLog, ServingRuntime, create_app

__all__ = ["PROJECT_ENV", "app_from_env", "serving_app"]

PROJECT_ENV = "PRODML_SERVE_PROJECT"
#: How many jobs ``GET /v1/admin/retraining/{policy}/history`` answers (newest first):
#: admin GET routes take no query parameters.
HISTORY_LIMIT = 50

log = logging.getLogger("prodml.retraining")


def serving_app(
    project: Project, *, close_project: bool = False, own_process: bool = False
) -> FastAPI:
    """The ASGI app serving every endpoint deployed in ``project``; ``own_process`` (a
    server process of its own) moves what startup loaded out of the cyclic GC and lets
    proven-equal scikit-learn models take arrays (see ``prodml.serving._fast_input``).

    Refuses (:class:`~prodml.core.IntegrityError` naming the file and how to restore
    it) when the metadata DB fails its quick check; ``/readyz`` repeats that check."""
    project.db.ensure_intact()
    config = project.config.serving
    log = PredictionLog(
        project.logs,
        clock=project.clock,
        flush_rows=config.log_flush_rows,
        flush_interval_s=config.log_flush_interval_s,
        max_queue=config.log_max_queue,
        log_features=config.log_features,
    )
    runtime = ServingRuntime(
        config=config,
        registry=project.registry,
        deployments=project.deployments,
        features=project.features,
        clock=project.clock,
        predictions=log,
        own_process=own_process,
        metadata=project.db,
    )
    actions = [*rollout_actions(project), *retraining_actions(project), *model_actions(project)]
    app = create_app(runtime, actions=actions)
    app.state.project = project  # for what entry points add (the dashboard)
    if close_project:
        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            try:
                async with inner(app):
                    yield
            finally:
                project.close()

        app.router.lifespan_context = lifespan
    return app


def _reason(body: Mapping[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise DefinitionError(f"field 'reason' must be a string, got {reason!r}")
    return reason


def rollout_actions(project: Project) -> list[AdminAction]:
    """The rollout controller's commands as admin routes ``/v1/admin/rollouts/...``:
    viewers read the status and the analysis, operators advance, pause, resume, approve
    and roll back, admins start plans and promote — each lands in the audit log."""

    def command(name: str) -> Callable[[str, Mapping[str, Any], str], Any]:
        def call(endpoint: str, body: Mapping[str, Any], actor: str) -> Any:
            method = getattr(project.rollout, name)
            return method(endpoint, actor=actor, reason=_reason(body)).to_dict()

        return call

    def start(endpoint: str, body: Mapping[str, Any], actor: str) -> Any:
        plan = body.get("plan")
        if not isinstance(plan, Mapping):
            raise DefinitionError("field 'plan' must be a rollout plan object")
        return project.rollout.start(endpoint, plan, actor=actor, reason=_reason(body)).to_dict()

    actions = [
        AdminAction("rollouts", None, "viewer", lambda e, b, a: project.rollout.status(e),
                    method="GET", changes=False, summary="A rollout's plan, state and decisions"),
        AdminAction("rollouts", "analysis", "viewer",
                    lambda e, b, a: project.rollout.analyze(e).to_dict(), method="GET",
                    changes=False, summary="The experiment analysis of an endpoint"),
        AdminAction("rollouts", "plan", "admin", start, method="PUT",
                    summary="Start a rollout plan (deploys its first step)"),
        AdminAction("rollouts", "promote", "admin", command("promote"),
                    summary="Promote the challenger now"),
    ]  # fmt: skip
    for name in ("advance", "pause", "resume", "approve", "rollback"):
        actions.append(
            AdminAction("rollouts", name, "operator", command(name), summary=f"{name} a rollout")
        )
    return actions


def model_actions(project: Project) -> list[AdminAction]:
    """Approving and rejecting model versions as admin routes
    ``/v1/admin/models/{model}/approve|reject`` (operators; body ``{"version": int,
    "reason": str}``): the registry records the token as the actor, with the reason, in
    the version's status and the audit log."""

    def change(status: str) -> Callable[[str, Mapping[str, Any], str], Any]:
        def call(model: str, body: Mapping[str, Any], actor: str) -> Any:
            version = body.get("version")
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise DefinitionError(
                    f"field 'version' must be a version number of model {model!r} (an "
                    f"integer >= 1), got {version!r}"
                )
            method = project.registry.approve if status == "approve" else project.registry.reject
            return method(f"{model}:{version}", actor=actor, reason=_reason(body)).to_dict()

        return call

    return [
        AdminAction("models", name, "operator", change(name), changes=False,
                    summary=f"{name.capitalize()} a model version")
        for name in ("approve", "reject")
    ]  # fmt: skip


def _force(body: Mapping[str, Any]) -> bool:
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise DefinitionError(f"field 'force' must be true or false, got {force!r}")
    return force


def retraining_actions(project: Project) -> list[AdminAction]:
    """The retraining controller's commands as admin routes
    ``/v1/admin/retraining/{policy}/...``, as ``prodml controller`` shows them: viewers
    read a policy's status (its ``status()`` entry and the controller lease) and its
    last :data:`HISTORY_LIMIT` jobs, newest first; operators ``run`` one pass of the
    policy (``{"force": bool, "reason": str}``, both optional), whose jobs record the
    token as their actor and are answered in full.

    A pass holds the project's retraining lease and gives it up when it ends, as
    ``prodml controller run`` does; while another controller holds it (or a pass started
    through this server is still running) ``run`` is a 409 naming the holder, and does
    nothing. A forced job records the request's ``reason`` ("started by hand: …"); a
    job a trigger started keeps the trigger's, and the request's ``reason`` goes to the
    ``prodml.retraining`` log with the actor. An unknown policy is a 404 naming the
    configured ones."""
    running = threading.Lock()  # the controller lease is per process: one pass at a time

    def status(policy: str, body: Mapping[str, Any], actor: str) -> Any:
        project.retraining.policy(policy)  # NotFoundError naming the configured policies
        found = project.retraining.status()
        entry = next(p for p in found["policies"] if p["policy"] == policy)
        return {**entry, "lease": found["lease"]}

    def history(policy: str, body: Mapping[str, Any], actor: str) -> Any:
        jobs = project.retraining.history(policy, limit=HISTORY_LIMIT)
        return {"policy": policy, "limit": HISTORY_LIMIT, "jobs": [j.to_dict() for j in jobs]}

    def run(policy: str, body: Mapping[str, Any], actor: str) -> Any:
        force, reason = _force(body), _reason(body)
        retraining = project.retraining
        retraining.policy(policy)
        if not running.acquire(blocking=False):
            raise ConflictError(
                f"retraining policy {policy!r}: a retraining pass started through this server "
                f"({retraining.holder}) is running; this pass did nothing — one controller "
                "acts at a time"
            )
        try:
            log.info("retraining pass of policy %r requested by %s (force=%s): %s",
                     policy, actor, force, reason or "no reason given")  # fmt: skip
            jobs = retraining.run_once(policy, force=force, actor=actor, reason=reason)
        finally:
            try:
                retraining.release()
            finally:
                running.release()
        for failure in retraining.failures:  # the pass failed outside a job: not a 200
            raise StateError(  # a 409 that says why (a ConfigError would be a bare 500)
                f"retraining policy {policy!r}: its pass failed before any job "
                f"({type(failure.error).__name__}: {failure.error})"
            ) from failure.error
        return {"policy": policy, "force": force, "jobs": [j.to_dict() for j in jobs]}

    return [
        AdminAction("retraining", None, "viewer", status, method="GET", changes=False,
                    summary="A retraining policy's champion, last job and trigger states"),
        AdminAction("retraining", "history", "viewer", history, method="GET", changes=False,
                    summary=f"A retraining policy's last {HISTORY_LIMIT} jobs, newest first"),
        AdminAction("retraining", "run", "operator", run,
                    summary="One retraining controller pass of a policy (force: start a job now)"),
    ]  # fmt: skip


def app_from_env(clock: Clock | None = None) -> FastAPI:
    """The app of the project named by ``PRODML_SERVE_PROJECT`` (uvicorn ``--factory``)."""
    path = os.environ.get(PROJECT_ENV)
    if not path:
        raise ProjectNotFoundError(f"{PROJECT_ENV} is not set: expected a project directory")
    return serving_app(Project.open(Path(path), clock=clock), close_project=True, own_process=True)
