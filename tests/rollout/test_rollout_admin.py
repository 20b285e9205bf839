"""The rollout commands as admin routes on a running app: viewers read the status and
the analysis, operators advance, pause, resume, approve and roll back, admins start
plans and promote; each change lands in the deployment's history under the token's
name and is applied by the server at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.project import serving_app
from servingkit import TOKEN, bearer, lr_model, register, serving_project, tokens_toml

VIEWER, OPERATOR, ADMIN = TOKEN["viewer"], TOKEN["operator"], TOKEN["admin"]
CONFIG = "[serving]\nwatch_interval_s = 3600\n" + tokens_toml("viewer", "operator", "admin")
PLAN = {"plan": {"challenger": "lr:2", "steps": [0.1, 0.5], "bake": "1h", "min_samples": 10,
                 "require_blessed": False}, "reason": "try lr:2"}  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """``lr:1`` serves endpoint ``lr`` alone; ``lr:2`` is registered and approved."""
    project, _ = serving_project(tmp_path / "project", config=CONFIG)
    model, X = lr_model(C=0.1, seed=1)
    register(project, model, X)
    yield project
    project.close()


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(serving_app(project)) as client:
        yield client


def test_roles_gate_each_rollout_command(client: TestClient, project: Project) -> None:
    url = "/v1/admin/rollouts/lr"
    assert client.put(f"{url}/plan", json=PLAN, headers=bearer(OPERATOR)).status_code == 403
    started = client.put(f"{url}/plan", json=PLAN, headers=bearer(ADMIN))
    assert started.status_code == 200, started.text
    assert started.json()["action"] == "start"
    assert project.deployments.get("lr").spec.serving_weights() == {
        "champion": 0.9, "challenger": 0.1,
    }  # fmt: skip
    status = client.get(url, headers=bearer(VIEWER))
    assert status.status_code == 200
    assert status.json()["status"] == "active"
    assert client.post(f"{url}/advance", json={}, headers=bearer(VIEWER)).status_code == 403
    advanced = client.post(
        f"{url}/advance", json={"reason": "looks fine"}, headers=bearer(OPERATOR)
    )
    assert advanced.status_code == 200, advanced.text
    assert project.deployments.get("lr").spec.serving_weights()["challenger"] == 0.5
    assert client.post(f"{url}/promote", json={}, headers=bearer(OPERATOR)).status_code == 403
    back = client.post(f"{url}/rollback", json={"reason": "stop"}, headers=bearer(OPERATOR))
    assert back.status_code == 200, back.text
    last = project.deployments.history("lr")[-1]
    assert (last["action"], last["actor"]) == ("rollback", "token:olga")
    assert project.deployments.get("lr").spec.policy == "single"


def test_refusals_are_clear_and_change_nothing(client: TestClient, project: Project) -> None:
    url = "/v1/admin/rollouts/lr"
    no_plan = client.post(f"{url}/advance", json={}, headers=bearer(OPERATOR))
    assert no_plan.status_code == 409
    assert "no rollout plan" in no_plan.json()["error"]
    bad = {"plan": {**PLAN["plan"], "steps": [0.5, 0.1]}}
    refused = client.put(f"{url}/plan", json=bad, headers=bearer(ADMIN))
    assert refused.status_code == 422
    assert "increase" in refused.json()["error"]
    before = project.deployments.get("lr").revision
    client.put(f"{url}/plan", json=PLAN, headers=bearer(ADMIN))
    promote = client.post(f"{url}/promote", json={"reason": 3}, headers=bearer(ADMIN))
    assert promote.status_code == 422
    assert "reason" in promote.json()["error"]
    assert project.deployments.get("lr").revision == before + 1  # the plan's start only
