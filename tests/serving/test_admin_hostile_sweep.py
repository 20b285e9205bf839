"""Hostile input to the admin API and the dashboard: changes made against a revision that
has moved on (a 409 that writes nothing, so of two racing changes one loses instead of
overwriting the other unseen), body fields the routes do not take, an empty weights map,
the dashboard's buttons carrying the revision they were shown, a corrupt prediction log
that must not take the dashboard's deployment pages (and their rollback buttons) down,
and every admin route refusing missing and wrong-role tokens without a 500."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.project import serving_app
from prodml.serving import SESSION_COOKIE
from prodml.web import ui_app
from servingkit import (
    TOKEN,
    bearer,
    canary_project,
    row,
    tokens_toml,
)

ADMIN, OPERATOR, VIEWER = bearer(TOKEN["admin"]), bearer(TOKEN["operator"]), bearer(TOKEN["viewer"])
TOKENS = "\n[serving]\nwatch_interval_s = 3600\n" + tokens_toml(
    "labeler", "viewer", "operator", "admin"
)
SINGLE = {
    "policy": "single",
    "arms": [{"name": "champion", "model": "lr:1", "role": "champion", "weight": 1.0}],
}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """``lr:1`` and ``lr:2`` approved; endpoint ``lr`` a 10% canary of ``lr:2`` at
    revision 2."""
    project, _ = canary_project(tmp_path / "project", config=TOKENS)
    yield project
    project.close()


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    app = ui_app(project)
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as client:
        yield client


def state(project: Project) -> tuple[Any, ...]:
    """What a refused change must leave as it was."""
    deployment = project.deployments.get("lr")
    return deployment.revision, deployment.spec.to_dict(), len(project.deployments.history("lr"))


# --- expected_revision: no lost update ----------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/admin/deployments/lr/weights", {"weights": {"challenger": 0.5}}),
        ("POST", "/v1/admin/deployments/lr/pause", {}),
        ("POST", "/v1/admin/deployments/lr/rollback", {}),
        ("POST", "/v1/admin/deployments/lr/promote", {"arm": "challenger"}),
        ("PUT", "/v1/admin/deployments/lr", {"spec": SINGLE}),
    ],
)
def test_a_change_made_against_a_stale_revision_is_a_409_that_writes_nothing(
    client: TestClient, project: Project, method: str, path: str, body: dict[str, Any]
) -> None:
    assert project.deployments.get("lr").revision == 2
    before = state(project)
    response = client.request(method, path, headers=ADMIN, json={**body, "expected_revision": 1})
    assert response.status_code == 409, response.text
    assert "revision 2" in response.json()["error"]
    assert "expected revision 1" in response.json()["error"]
    assert state(project) == before

    response = client.request(method, path, headers=ADMIN, json={**body, "expected_revision": 2})
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 3


def test_a_deploy_expecting_no_deployment_refuses_to_replace_one(
    client: TestClient, project: Project
) -> None:
    before = state(project)
    response = client.put(
        "/v1/admin/deployments/lr", headers=ADMIN, json={"spec": SINGLE, "expected_revision": 0}
    )
    assert response.status_code == 409, response.text
    assert state(project) == before
    response = client.put(
        "/v1/admin/deployments/fresh", headers=ADMIN, json={"spec": SINGLE, "expected_revision": 0}
    )
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 1


def test_two_racing_changes_read_at_one_revision_one_wins_the_other_is_a_409(
    client: TestClient, project: Project
) -> None:
    barrier = threading.Barrier(4)
    answers: list[Any] = []

    def change(weight: float) -> None:
        barrier.wait()
        answers.append(
            client.post(
                "/v1/admin/deployments/lr/weights",
                headers=OPERATOR,
                json={"weights": {"challenger": weight}, "expected_revision": 2},
            )
        )

    threads = [threading.Thread(target=change, args=(w,)) for w in (0.2, 0.3, 0.4, 0.5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409], [a.text for a in answers]
    [winner] = [a.json() for a in answers if a.status_code == 200]
    deployment = project.deployments.get("lr")
    assert deployment.revision == 3
    assert deployment.spec.to_dict() == winner["spec"]


@pytest.mark.parametrize("value", ["2", 2.0, 1.5, True, -1, [2], {"r": 2}])
def test_an_expected_revision_that_is_no_revision_is_a_422(
    client: TestClient, project: Project, value: Any
) -> None:
    before = state(project)
    for path, body in (
        ("/v1/admin/deployments/lr/weights", {"weights": {"challenger": 0.5}}),
        ("/v1/admin/deployments/lr/pause", {}),
    ):
        response = client.post(path, headers=OPERATOR, json={**body, "expected_revision": value})
        assert response.status_code == 422, response.text
        assert "expected_revision" in response.json()["error"]
    assert state(project) == before


# --- bodies the routes do not take ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "unknown"),
    [
        (
            "POST",
            "/v1/admin/deployments/lr/weights",
            {"weights": {"challenger": 0.5}, "expected_revison": 1},
            "expected_revison",
        ),
        ("POST", "/v1/admin/deployments/lr/pause", {"resaon": "typo"}, "resaon"),
        ("POST", "/v1/admin/deployments/lr/promote", {"arms": "champion"}, "arms"),
        ("PUT", "/v1/admin/deployments/lr", {"spec": SINGLE, "force": True}, "force"),
    ],
)
def test_an_unknown_body_field_is_a_422_naming_it_and_writes_nothing(
    client: TestClient, project: Project, method: str, path: str, body: dict[str, Any], unknown: str
) -> None:
    before = state(project)
    response = client.request(method, path, headers=ADMIN, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert unknown in answer["error"]
    assert [d["field"] for d in answer["details"]] == [unknown]
    assert state(project) == before


def test_an_empty_weights_map_is_a_422_and_records_no_revision(
    client: TestClient, project: Project
) -> None:
    before = state(project)
    response = client.post(
        "/v1/admin/deployments/lr/weights", headers=OPERATOR, json={"weights": {}}
    )
    assert response.status_code == 422, response.text
    assert "weights" in response.json()["error"]
    assert state(project) == before


# --- the dashboard --------------------------------------------------------------------------


def test_the_dashboard_buttons_carry_the_revision_they_were_shown(
    client: TestClient, project: Project
) -> None:
    client.cookies.set(SESSION_COOKIE, TOKEN["admin"])
    page = client.get("/ui/endpoints/lr")
    assert page.status_code == 200
    buttons = re.findall(r'<button type="button" class="act"[^>]*>', page.text)
    deployment_buttons = [b for b in buttons if "/v1/admin/deployments/" in b]
    assert deployment_buttons
    for button in deployment_buttons:
        assert "data-body=" in button, button
        assert "&#34;expected_revision&#34;: 2" in button, button
    # a change made meanwhile: the stale page's button is refused
    client.cookies.clear()
    client.post("/v1/admin/deployments/lr/weights", headers=OPERATOR,
                json={"weights": {"challenger": 0.3}})  # fmt: skip
    stale = client.post(
        "/v1/admin/deployments/lr/pause",
        headers=OPERATOR,
        json={"expected_revision": 2, "reason": "from a page shown at revision 2"},
    )
    assert stale.status_code == 409
    assert not project.deployments.get("lr").spec.paused


def test_a_corrupt_prediction_log_file_leaves_the_deployment_pages_usable(
    project: Project,
) -> None:
    with TestClient(serving_app(project)) as server:  # leaving it flushes the log
        for seed in range(3):
            answer = server.post(
                "/v1/endpoints/lr/invocations", json={"dataframe_records": [row(seed)]}
            )
            assert answer.status_code == 200
    [corrupt] = sorted((project.root / ".prodml" / "logs" / "predictions").rglob("*.parquet"))
    corrupt.write_bytes(b"PAR1 not a parquet file")

    with TestClient(ui_app(project), raise_server_exceptions=False) as client:
        client.cookies.set(SESSION_COOKIE, TOKEN["operator"])
        overview = client.get("/ui")
        assert overview.status_code == 200, overview.text[-600:]
        assert "log unreadable" in overview.text
        page = client.get("/ui/endpoints/lr")
        assert page.status_code == 200, page.text[-600:]
        assert "Traffic cannot be shown" in page.text
        assert "/v1/admin/deployments/lr/rollback" in page.text  # the way out is still offered
    assert corrupt.read_bytes() == b"PAR1 not a parquet file"  # the dashboard writes nothing


# --- tokens ---------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/admin/deployments", "viewer"),
    ("GET", "/v1/admin/deployments/lr/history", "viewer"),
    ("PUT", "/v1/admin/deployments/lr", "admin"),
    ("POST", "/v1/admin/deployments/lr/weights", "operator"),
    ("POST", "/v1/admin/deployments/lr/pause", "operator"),
    ("POST", "/v1/admin/deployments/lr/resume", "operator"),
    ("POST", "/v1/admin/deployments/lr/rollback", "operator"),
    ("POST", "/v1/admin/deployments/lr/restore_previous", "operator"),
    ("POST", "/v1/admin/deployments/lr/promote", "admin"),
    ("GET", "/v1/admin/rollouts/lr", "viewer"),
    ("PUT", "/v1/admin/rollouts/lr/plan", "admin"),
    ("POST", "/v1/admin/rollouts/lr/advance", "operator"),
    ("POST", "/v1/admin/models/lr/approve", "operator"),
    ("POST", "/v1/admin/retraining/nightly/run", "operator"),
]
RANK = {"labeler": -1, "viewer": 0, "operator": 1, "admin": 2}


def test_every_admin_route_refuses_missing_bad_and_lower_tokens(
    client: TestClient, project: Project
) -> None:
    before = state(project)
    for method, path, needs in ROUTES:
        for headers in (
            {},
            bearer("not-a-known-token-at-all"),
            {"Authorization": TOKEN["admin"]},  # no scheme
            {"Authorization": "Basic " + TOKEN["admin"]},
            {"Authorization": "Bearer "},
        ):
            response = client.request(method, path, headers=headers, content=b"{}")
            assert response.status_code == 401, (method, path, headers, response.text)
        for role, token in TOKEN.items():
            if RANK[role] < RANK[needs]:
                response = client.request(method, path, headers=bearer(token), content=b"{}")
                assert response.status_code == 403, (method, path, role, response.text)
                assert token not in response.text
    assert state(project) == before
