"""Liveness and readiness: /readyz is 200 only with models loaded and every store the
request path needs answering; /metrics exports the queue gauges."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prodml.core import StorageError
from prodml.project import serving_app
from servingkit import serving_project


def test_readyz_reports_models_and_stores_and_fails_when_the_database_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = serving_project(tmp_path / "p")
    with TestClient(serving_app(project)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["ready"] is True
        assert body["models_loaded"] is True
        assert body["stores"] == {"metadata": "ok"}
        assert body["endpoints"] == {"lr": 1}

        def down() -> dict[str, int]:
            raise StorageError("metadata DB sqlite:///meta.db is unreachable")

        monkeypatch.setattr(project.deployments, "revisions", down)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "unreachable" in ready.json()["stores"]["metadata"]
        assert client.get("/v2/health/live").json() == {"live": True}
        metrics = client.get("/metrics").text
        assert 'prodml_batch_queue_depth{model="lr:1"} 0.0' in metrics
        assert 'prodml_log_queue_depth{log="predictions"}' in metrics
    project.close()


def test_readyz_is_503_without_any_deployment(tmp_path: Path) -> None:
    from prodml import Project

    project = Project.init(tmp_path / "empty")
    with TestClient(serving_app(project)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["models_loaded"] is False
        assert client.get("/v2/health/ready").status_code == 503
    project.close()
