"""Wire a project's stores into a serving app (``prodml serve``, tests, benchmarks).

``app_from_env`` is the factory uvicorn imports in each worker process when
``prodml serve --workers N`` runs more than one: the project directory arrives in
``PRODML_SERVE_PROJECT``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from prodml.core import Clock, ProjectNotFoundError
from prodml.project._project import Project
from prodml.serving import PredictionLog, ServingRuntime, create_app

__all__ = ["PROJECT_ENV", "app_from_env", "serving_app"]

PROJECT_ENV = "PRODML_SERVE_PROJECT"


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
    app = create_app(runtime)
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


def app_from_env(clock: Clock | None = None) -> FastAPI:
    """The app of the project named by ``PRODML_SERVE_PROJECT`` (uvicorn ``--factory``)."""
    path = os.environ.get(PROJECT_ENV)
    if not path:
        raise ProjectNotFoundError(f"{PROJECT_ENV} is not set: expected a project directory")
    return serving_app(Project.open(Path(path), clock=clock), close_project=True, own_process=True)
