"""The admin API behind bearer tokens with roles: viewers read, operators set weights,
pause, resume and roll back, admins deploy and promote; every change is recorded with
the token's name and applied by the server at once. Also: the admin API with no token
configured, and predictions that require a token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.project import serving_app
from prodml.registry import DeploymentSpec, Signature
from servingkit import (
    FEATURES,
    PATIENT_MS,
    TOKEN,
    bearer,
    canary_project,
    lr_model,
    row,
    serving_project,
    tokens_toml,
)

VIEWER, OPERATOR, ADMIN = TOKEN["viewer"], TOKEN["operator"], TOKEN["admin"]
TOKENS = """
[serving]
watch_interval_s = 3600
""" + tokens_toml("viewer", "operator", "admin")


def v2_body(values: dict[str, float]) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [values[n]]} for n in FEATURES
        ]
    }


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """``lr:1`` and ``lr:2`` registered; endpoint ``lr`` a 10% canary of ``lr:2``."""
    project, _ = canary_project(tmp_path / "project", config=TOKENS)
    yield project
    project.close()


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(serving_app(project)) as client:
        yield client


def test_admin_api_needs_a_valid_token(client: TestClient) -> None:
    for headers in ({}, bearer("not-a-known-token-at-all"), {"Authorization": VIEWER}):
        response = client.get("/v1/admin/deployments", headers=headers)
        assert response.status_code == 401
        assert "bearer token" in response.json()["error"]
    response = client.post(
        "/v1/admin/deployments/lr/weights", json={"weights": {"challenger": 0.5}}
    )
    assert response.status_code == 401
    response = client.put("/v1/admin/deployments/lr", json={"spec": "not a spec"})
    assert response.status_code == 401  # the token is checked before the body
    response = client.get("/v1/admin/deployments", headers=bearer(VIEWER))
    assert response.status_code == 200
    [deployment] = response.json()
    assert deployment["endpoint"] == "lr"
    assert deployment["spec"]["policy"] == "canary"
    response = client.get("/v1/admin/deployments/lr/history", headers=bearer(VIEWER))
    assert response.status_code == 200
    assert [h["action"] for h in response.json()] == ["deploy", "deploy"]


@pytest.mark.parametrize(
    ("token", "method", "path", "body"),
    [
        (VIEWER, "POST", "/v1/admin/deployments/lr/weights", {"weights": {"challenger": 0.5}}),
        (VIEWER, "POST", "/v1/admin/deployments/lr/pause", {}),
        (VIEWER, "POST", "/v1/admin/deployments/lr/rollback", {}),
        (OPERATOR, "POST", "/v1/admin/deployments/lr/promote", {"arm": "challenger"}),
        (OPERATOR, "PUT", "/v1/admin/deployments/lr", {"spec": {"policy": "single"}}),
    ],
)
def test_a_role_below_the_action_is_403(
    project: Project, client: TestClient, token: str, method: str, path: str, body: Any
) -> None:
    response = client.request(method, path, json=body, headers=bearer(token))
    assert response.status_code == 403, response.text
    assert "needs" in response.json()["error"]
    assert project.deployments.get("lr").revision == 2  # nothing changed


def test_operator_sets_weights_pauses_resumes_and_rolls_back(
    project: Project, client: TestClient
) -> None:
    headers = bearer(OPERATOR)
    response = client.post(
        "/v1/admin/deployments/lr/weights",
        json={"weights": {"challenger": 0.4}, "reason": "ramp up"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 3
    assert project.deployments.get("lr").spec.arm("challenger").weight == 0.4
    live = client.get("/v1/endpoints/lr").json()  # applied at once, no watch needed
    assert live["revision"] == 3
    assert live["weights"] == pytest.approx({"champion": 0.6, "challenger": 0.4})

    assert client.post("/v1/admin/deployments/lr/pause", headers=headers).status_code == 200
    live = client.get("/v1/endpoints/lr").json()
    assert live["paused"] is True
    assert live["weights"] == {"champion": 1.0}
    again = client.post("/v1/admin/deployments/lr/pause", headers=headers)
    assert again.status_code == 409
    assert "already paused" in again.json()["error"]
    response = client.post(
        "/v1/admin/deployments/lr/resume", json={"reason": "fixed"}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert client.get("/v1/endpoints/lr").json()["paused"] is False

    bad = client.post(
        "/v1/admin/deployments/lr/weights", json={"weights": {"nope": 0.5}}, headers=headers
    )
    assert bad.status_code == 422
    bad = client.post(
        "/v1/admin/deployments/lr/weights", json={"weights": "all of it"}, headers=headers
    )
    assert bad.status_code == 422
    assert [d["field"] for d in bad.json()["details"]] == ["weights"]

    response = client.post("/v1/admin/deployments/lr/rollback", headers=headers)
    assert response.status_code == 200, response.text
    spec = project.deployments.get("lr").spec
    assert spec.policy == "single"
    assert spec.arms[0].model == "lr:1"
    live = client.get("/v1/endpoints/lr").json()
    assert live["policy"] == "single"
    assert [a["model"] for a in live["arms"]] == ["lr:1"]

    history = client.get("/v1/admin/deployments/lr/history", headers=bearer(VIEWER)).json()
    changes = [(h["action"], h["actor"], h["reason"]) for h in history[2:]]
    assert changes == [
        ("set_weights", "token:olga", "ramp up"),
        ("pause", "token:olga", None),
        ("resume", "token:olga", "fixed"),
        ("rollback", "token:olga", None),
    ]


def test_admin_deploys_an_alias_resolved_and_promotes(project: Project, client: TestClient) -> None:
    project.registry.set_alias("lr", "champion", 2, actor="test")
    spec = {
        "policy": "canary",
        "arms": [
            {"name": "champion", "model": "lr:1", "role": "champion", "weight": 0.75},
            {"name": "challenger", "model": "lr@champion", "role": "challenger", "weight": 0.25},
        ],
        "timeout_ms": 500,
    }
    response = client.put(
        "/v1/admin/deployments/lr", json={"spec": spec, "reason": "new"}, headers=bearer(ADMIN)
    )
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["arms"][1]["model"] == "lr:2"
    stored = project.deployments.get("lr").spec
    assert [a.model for a in stored.arms] == ["lr:1", "lr:2"]  # stored resolved
    project.registry.set_alias("lr", "champion", 1, actor="test")
    assert project.deployments.get("lr").spec.arm("challenger").model == "lr:2"

    bad = client.put(
        "/v1/admin/deployments/lr",
        json={"spec": {**spec, "policy": "lottery"}},
        headers=bearer(ADMIN),
    )
    assert bad.status_code == 422

    response = client.put(
        "/v1/admin/deployments/lr2",
        json={"spec": {"policy": "single", "arms": [{"name": "champion", "model": "lr:2", "role": "champion"}]}},
        headers=bearer(ADMIN),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    infer = client.post("/v2/models/lr2/infer", json=v2_body(row(1)))
    assert infer.status_code == 200, infer.text  # served at once
    assert infer.json()["model_version"] == "2"

    response = client.post(
        "/v1/admin/deployments/lr/promote", json={"arm": "challenger"}, headers=bearer(ADMIN)
    )
    assert response.status_code == 200, response.text
    spec_now = project.deployments.get("lr").spec
    assert spec_now.policy == "single"
    assert spec_now.arms[0].model == "lr:2"
    assert client.get("/v1/endpoints/lr").json()["arms"][0]["model"] == "lr:2"

    history = project.deployments.history("lr")
    assert [(h["action"], h["actor"]) for h in history[2:]] == [
        ("deploy", "token:adam"),
        ("promote", "token:adam"),
    ]
    assert project.deployments.history("lr2")[0]["actor"] == "token:adam"


def test_without_tokens_the_admin_api_is_closed(tmp_path: Path) -> None:
    project, _ = serving_project(tmp_path / "project")
    try:
        with TestClient(serving_app(project)) as client:
            for headers in ({}, bearer(ADMIN)):
                response = client.get("/v1/admin/deployments", headers=headers)
                assert response.status_code == 401
                assert "no tokens are configured" in response.json()["error"]
            response = client.post("/v1/admin/deployments/lr/pause", headers=bearer(ADMIN))
            assert response.status_code == 401
            assert client.post("/v2/models/lr/infer", json=v2_body(row(1))).status_code == 200
        assert project.deployments.get("lr").spec.paused is False
    finally:
        project.close()


def test_predictions_can_require_a_token(tmp_path: Path) -> None:
    config = TOKENS.replace("[serving]\n", "[serving]\npredict_requires_token = true\n")
    project, _ = serving_project(tmp_path / "project", config=config)
    try:
        with TestClient(serving_app(project)) as client:
            body = v2_body(row(1))
            records = {"dataframe_records": [row(1)]}
            feedback = {"endpoint": "lr", "request_id": "r-1", "label": 1}
            for headers in ({}, bearer("not-a-known-token-at-all")):
                assert (
                    client.post("/v2/models/lr/infer", json=body, headers=headers).status_code
                    == 401
                )
                assert client.post("/invocations", json=records, headers=headers).status_code == 401
                assert (
                    client.post("/v1/feedback", json=feedback, headers=headers).status_code == 401
                )
            for token in (VIEWER, OPERATOR, ADMIN):
                response = client.post("/v2/models/lr/infer", json=body, headers=bearer(token))
                assert response.status_code == 200, response.text
            assert (
                client.post("/invocations", json=records, headers=bearer(VIEWER)).status_code == 200
            )
            assert (
                client.post("/v1/feedback", json=feedback, headers=bearer(VIEWER)).status_code
                == 200
            )
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
    finally:
        project.close()


def test_promote_and_rollback_keep_the_champion_alias_in_step(
    project: Project, client: TestClient
) -> None:
    project.registry.set_alias("lr", "champion", 1, actor="test")
    response = client.post(
        "/v1/admin/deployments/lr/promote",
        json={"arm": "challenger", "reason": "won the canary"},
        headers=bearer(ADMIN),
    )
    assert response.status_code == 200, response.text
    assert project.registry.aliases("lr") == {"champion": 2, "previous": 1}
    moved = project.registry.audit_log("lr@champion")[-1]
    assert (moved.actor, moved.after and moved.after["reason"]) == (
        "token:adam",
        "won the canary",
    )
    assert client.get("/v1/endpoints/lr").json()["policy"] == "single"

    response = client.post(
        "/v1/admin/deployments/lr/rollback", json={"reason": "p99"}, headers=bearer(OPERATOR)
    )
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["policy"] == "canary"
    assert project.registry.aliases("lr") == {"champion": 1}
    assert project.registry.audit_log("lr@champion")[-1].actor == "token:olga"
    live = client.get("/v1/endpoints/lr").json()
    assert (live["policy"], [a["model"] for a in live["arms"]]) == ("canary", ["lr:1", "lr:2"])

    # Someone moves the alias after a promote: the rollback is refused, nothing changes.
    assert client.post("/v1/admin/deployments/lr/promote", headers=bearer(ADMIN)).status_code == 200
    project.registry.set_alias("lr", "champion", 1, actor="carol")
    revision = project.deployments.get("lr").revision
    response = client.post("/v1/admin/deployments/lr/rollback", headers=bearer(OPERATOR))
    assert response.status_code == 409, response.text
    assert "lr@champion" in response.json()["error"]
    assert "now points at lr:1" in response.json()["error"]
    assert project.deployments.get("lr").revision == revision
    assert project.registry.aliases("lr") == {"champion": 1, "previous": 1}


def test_promote_of_an_unapproved_version_is_refused_over_http(
    project: Project, client: TestClient
) -> None:
    model, _ = lr_model(C=0.5, seed=3)
    signature = Signature.from_dict(project.registry.get("lr:1").signature)
    pending = project.registry.register("lr", model, signature=signature, actor="test")
    spec = DeploymentSpec.canary("lr:1", pending.ref, weight=0.1, timeout_ms=PATIENT_MS)
    before = project.deployments.deploy("lr", spec, actor="test")
    response = client.post("/v1/admin/deployments/lr/promote", headers=bearer(ADMIN))
    assert response.status_code == 409, response.text
    assert "prodml models approve lr:3" in response.json()["error"]
    assert project.deployments.get("lr") == before
    assert project.registry.aliases("lr") == {}


def test_operator_restores_the_previous_champion_when_the_promote_is_not_the_last_change(
    project: Project,
) -> None:
    with TestClient(serving_app(project)) as client:
        promoted = client.post(
            "/v1/admin/deployments/lr/promote", json={"arm": "challenger"}, headers=bearer(ADMIN)
        )
        assert promoted.status_code == 200, promoted.text
        assert client.post("/v1/admin/deployments/lr/pause", headers=bearer(OPERATOR)).status_code == 200  # fmt: skip
        assert client.post("/v1/admin/deployments/lr/resume", headers=bearer(OPERATOR)).status_code == 200  # fmt: skip
        refused = client.post("/v1/admin/deployments/lr/rollback", headers=bearer(OPERATOR))
        assert refused.status_code == 409  # the last change is a resume: nothing to undo
        denied = client.post("/v1/admin/deployments/lr/restore_previous", headers=bearer(VIEWER))
        assert denied.status_code == 403
        restored = client.post(
            "/v1/admin/deployments/lr/restore_previous",
            json={"reason": "v2 misbehaves"},
            headers=bearer(OPERATOR),
        )
        assert restored.status_code == 200, restored.text
        assert [a["model"] for a in client.get("/v1/endpoints/lr").json()["arms"]] == ["lr:1"]
    assert project.registry.aliases("lr")["champion"] == 1
    last = project.deployments.history("lr")[-1]
    assert (last["action"], last["actor"], last["reason"]) == (
        "rollback", "token:olga", "v2 misbehaves"
    )  # fmt: skip
