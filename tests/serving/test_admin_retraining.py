"""The retraining controller's commands as admin routes on a running app: viewers read a
policy's status and job history, operators run a pass whose jobs record the token as
their actor; an unknown policy is a 404 naming the configured ones, a malformed body a
422, and a pass while another controller holds the lease a 409 naming it — all three
run nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from featurekit import T0
from prodml import Project
from prodml.core import SimulatedClock
from prodml.project import serving_app
from rolloutkit import wait_until
from servingkit import TOKEN, bearer, tokens_toml
from trainkit import make_training_project

VIEWER, OPERATOR = TOKEN["viewer"], TOKEN["operator"]
#: Labelled rows span [T0, T0 + 10 days).
NOW = T0 + timedelta(days=10)
URL = "/v1/admin/retraining/nightly"
CONFIG = (
    "\n[serving]\nwatch_interval_s = 3600\n"
    + tokens_toml("viewer", "operator")
    + f"""
[retraining]
lease_s = 60

[[retraining.policies]]
name = "nightly"
model = "flight_delay"
window = "expanding"
start = {T0:%Y-%m-%dT%H:%M:%SZ}
auto_approve = true

[[retraining.policies]]
name = "weekly"
model = "flight_delay"
window = "sliding"
window_days = 7

[[retraining.policies]]
name = "rmse"
model = "flight_delay"
endpoint = "flight_delay"
window = "expanding"
start = {T0:%Y-%m-%dT%H:%M:%SZ}

[[retraining.policies.triggers]]
kind = "performance"
metric = "performance.rmse"
"""
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The training project with ``flight_delay:1`` (the first six days) approved as the
    champion, two trigger-less retraining policies (jobs start only when forced) and
    viewer and operator tokens."""
    root = tmp_path / "p"
    make_training_project(root).close()
    with (root / "prodml.toml").open("a") as f:
        f.write(CONFIG)
    with Project.open(root, clock=SimulatedClock(T0 + timedelta(days=6))) as project:
        version = project.training.train(T0, T0 + timedelta(days=6), actor="alice").version
        assert version is not None
        project.registry.approve(version.ref, actor="alice")
        project.registry.set_alias("flight_delay", "champion", version.version, actor="alice")
    return root


@pytest.fixture
def project(root: Path) -> Iterator[Project]:
    project = Project.open(root, clock=SimulatedClock(NOW))
    yield project
    project.close()


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(serving_app(project)) as client:
        yield client


def test_a_viewer_reads_a_policys_status_and_history(client: TestClient) -> None:
    assert client.get(URL).status_code == 401
    status = client.get(URL, headers=bearer(VIEWER))
    assert status.status_code == 200, status.text
    assert status.json() == {
        "policy": "nightly", "model": "flight_delay", "endpoint": None,
        "champion": "flight_delay:1",
        "last_job": None, "triggers": [], "lease": None,
    }  # fmt: skip
    history = client.get(f"{URL}/history", headers=bearer(VIEWER))
    assert history.status_code == 200, history.text
    assert history.json() == {"policy": "nightly", "limit": 50, "jobs": []}


def test_a_viewer_cannot_run_a_pass(client: TestClient, project: Project) -> None:
    response = client.post(f"{URL}/run", json={"force": True}, headers=bearer(VIEWER))
    assert response.status_code == 403, response.text
    assert "needs" in response.json()["error"]
    assert project.retraining.history() == []


def test_an_operator_runs_a_pass_whose_job_records_the_tokens_actor(
    client: TestClient, project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "prodml.retraining"):
        response = client.post(
            f"{URL}/run", json={"force": True, "reason": "new labels"}, headers=bearer(OPERATOR)
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["policy"], answer["force"]) == ("nightly", True)
    [job] = answer["jobs"]
    assert (job["policy"], job["trigger"], job["status"]) == ("nightly", "manual", "succeeded")
    assert job["actor"] == "token:olga"
    assert job["reason"] == "started by hand: new labels"
    assert job["candidate"] == "flight_delay:2"
    gate = next(s for s in job["steps"] if s["name"] == "evaluate_and_gate")
    assert gate["detail"]["gate"] == "BLESSED"
    assert "roc_auc" in gate["detail"]["metrics"]
    assert "token:olga" in caplog.text
    assert "new labels" in caplog.text
    [stored] = project.retraining.history("nightly")
    assert stored.to_dict() == job
    assert project.registry.get("flight_delay:2").status == "approved"  # auto-approved

    history = client.get(f"{URL}/history", headers=bearer(VIEWER)).json()
    assert history["jobs"] == [job]
    status = client.get(URL, headers=bearer(VIEWER)).json()
    assert status["last_job"] == job
    assert status["lease"] is None  # the pass gave the controller lease up
    other = client.get("/v1/admin/retraining/weekly/history", headers=bearer(VIEWER)).json()
    assert other["jobs"] == []

    # Without force and with no trigger, a pass starts nothing.
    again = client.post(f"{URL}/run", json={}, headers=bearer(OPERATOR))
    assert again.status_code == 200, again.text
    assert again.json() == {"policy": "nightly", "force": False, "jobs": []}
    assert len(project.retraining.history()) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("GET", "/history"), ("POST", "/run")],
)
def test_an_unknown_policy_is_404_naming_it_and_the_configured_ones(
    client: TestClient, project: Project, method: str, path: str
) -> None:
    response = client.request(
        method, f"/v1/admin/retraining/hourly{path}", json={"force": True},
        headers=bearer(OPERATOR),
    )  # fmt: skip
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert "'hourly'" in error
    assert "'nightly'" in error
    assert "'weekly'" in error
    assert project.retraining.history() == []


def test_a_pass_that_fails_outside_a_job_is_an_error_not_an_empty_200(
    client: TestClient, project: Project
) -> None:
    """Policy ``rmse`` has no threshold and the champion (a classifier) no test rmse to
    derive one from: its pass cannot judge the trigger, which must not read as "nothing
    fired"."""
    answer = client.post("/v1/admin/retraining/rmse/run", json={}, headers=bearer(OPERATOR))
    assert answer.status_code == 409, answer.text
    assert "has no finite test 'rmse'" in answer.json()["error"]
    assert project.retraining.history("rmse") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({"force": "yes"}, "force"), ({"force": 1}, "force"), ({"reason": 3}, "reason")],
)
def test_a_malformed_body_is_422_and_runs_nothing(
    client: TestClient, project: Project, body: dict[str, object], field: str
) -> None:
    response = client.post(f"{URL}/run", json=body, headers=bearer(OPERATOR))
    assert response.status_code == 422, response.text
    assert f"field '{field}'" in response.json()["error"]
    assert project.retraining.history() == []


def test_a_pass_while_another_controller_holds_the_lease_is_409_naming_it(
    root: Path, client: TestClient, project: Project
) -> None:
    with Project.open(root, clock=SimulatedClock(NOW)) as other:
        assert other.retraining.run_once("nightly") == []  # takes the lease, keeps it
        response = client.post(f"{URL}/run", json={"force": True}, headers=bearer(OPERATOR))
        assert response.status_code == 409, response.text
        assert other.retraining.holder in response.json()["error"]
        assert project.retraining.history() == []
        status = client.get(URL, headers=bearer(VIEWER)).json()
        assert status["lease"]["holder"] == other.retraining.holder
        other.retraining.release()
    response = client.post(f"{URL}/run", json={}, headers=bearer(OPERATOR))
    assert response.status_code == 200, response.text
    assert response.json()["jobs"] == []


def test_a_second_pass_while_this_servers_pass_runs_is_409(
    client: TestClient, project: Project
) -> None:
    """Both passes would share this server's lease holder: the second is refused
    instead of abandoning the first one's running job and starting another."""
    go_on = threading.Event()
    train = project.training.train

    def held(*args: Any, **kwargs: Any) -> Any:
        if not go_on.wait(120):
            raise RuntimeError("the test never let the training go on")
        return train(*args, **kwargs)

    project.training.train = held  # type: ignore[method-assign]
    run = f"{URL}/run"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, run, json={"force": True}, headers=bearer(OPERATOR))
        try:
            wait_until(project.retraining.history, timeout=120, what="the first pass's job")
            second = client.post(run, json={"force": True}, headers=bearer(OPERATOR))
        finally:
            go_on.set()
        assert second.status_code == 409, second.text
        assert project.retraining.holder in second.json()["error"]
        assert first.result().status_code == 200
    [job] = project.retraining.history()
    assert job.status == "succeeded"
