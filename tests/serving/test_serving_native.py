"""The native protocol end to end on a trained project: entity keys in, features fetched
from the online store, on-demand features computed by the training code path, the
prediction equal to the model's own on those features; contract errors per field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.core import SimulatedClock
from prodml.project import serving_app
from prodml.registry import DeploymentSpec
from prodml.storage import read_log
from trainkit import END, make_served_project


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("native") / "p"
    make_served_project(root, {"flight_delay": DeploymentSpec.single("flight_delay:1")})
    return root


@pytest.fixture
def client(project_dir: Path) -> Iterator[tuple[TestClient, Project]]:
    project = Project.open(project_dir, clock=SimulatedClock(END))
    with TestClient(serving_app(project)) as client:
        yield client, project
    project.close()


def _expected(
    project: Project, entities: dict[str, list[object]], request: dict[str, list[object]]
) -> np.ndarray:
    online = project.features.get_online("flight_delay", entities, request)
    loaded = project.registry.load("flight_delay:1")
    frame = pd.DataFrame({**request, **online.values})[loaded.signature.columns]
    return loaded.predict(frame)


def test_single_prediction_fetches_features_and_matches_the_model(
    client: tuple[TestClient, Project],
) -> None:
    http, project = client
    body = {
        "entities": {"origin": "EWR", "tailnum": "N2"},
        "request_data": {"sched_dep_time": 1730},
        "id": "req-1",
    }
    response = http.post("/v1/endpoints/flight_delay/predict", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["request_id"] == "req-1"
    assert data["model_version"] == "flight_delay:1"
    assert data["arm"] == "champion"
    expected = _expected(
        project, {"origin": ["EWR"], "tailnum": ["N2"]}, {"sched_dep_time": [1730]}
    )
    assert data["prediction"] == pytest.approx(float(expected[0]), rel=1e-12)


def test_batch_prediction_keeps_row_order(client: tuple[TestClient, Project]) -> None:
    http, project = client
    entities = [
        {"origin": o, "tailnum": t} for o, t in [("EWR", "N1"), ("JFK", "N3"), ("LGA", "N2")]
    ]
    request = [{"sched_dep_time": v} for v in (615, 1200, 2100)]
    response = http.post(
        "/v1/endpoints/flight_delay/predict", json={"entities": entities, "request_data": request}
    )
    assert response.status_code == 200, response.text
    expected = _expected(
        project,
        {"origin": ["EWR", "JFK", "LGA"], "tailnum": ["N1", "N3", "N2"]},
        {"sched_dep_time": [615, 1200, 2100]},
    )
    assert response.json()["predictions"] == pytest.approx(expected.tolist(), rel=1e-12)


def test_unknown_entity_is_served_with_null_features(client: tuple[TestClient, Project]) -> None:
    http, _ = client
    body = {"entities": {"origin": "XXX", "tailnum": "N9"}, "request_data": {"sched_dep_time": 900}}
    response = http.post("/v1/endpoints/flight_delay/predict", json=body)
    assert response.status_code == 200, response.text
    assert 0.0 <= response.json()["prediction"] <= 1.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entities": {"origin": "EWR"}, "request_data": {"sched_dep_time": 1}}, "entities"),
        ({"entities": {"origin": "EWR", "tailnum": "N1"}}, "sched_dep_time"),
        (
            {
                "entities": {"origin": "EWR", "tailnum": "N1"},
                "request_data": {"sched_dep_time": 1, "secret_field": "s3cr3t-value"},
            },
            "request_data",
        ),
        ({"request_data": {"sched_dep_time": 1}}, "entities"),
        ({"entities": "EWR"}, "entities"),
    ],
)
def test_contract_errors_name_the_field_and_never_echo_values(
    client: tuple[TestClient, Project], body: dict[str, object], field: str
) -> None:
    http, _ = client
    response = http.post("/v1/endpoints/flight_delay/predict", json=body)
    assert response.status_code == 422, response.text
    text = response.text
    assert field in text
    assert "s3cr3t-value" not in text
    assert "Traceback" not in text


def test_predictions_are_logged_with_entities_features_and_versions(project_dir: Path) -> None:
    project = Project.open(project_dir, clock=SimulatedClock(END))
    with TestClient(serving_app(project)) as http:
        body = {
            "entities": {"origin": "LGA", "tailnum": "N3"},
            "request_data": {"sched_dep_time": 800},
            "id": "logged-1",
        }
        response = http.post("/v1/endpoints/flight_delay/predict", json=body)
        assert response.status_code == 200
    table = read_log(project.state_dir / "logs" / "predictions", partition="flight_delay")
    rows = [r for r in table.to_pylist() if r["request_id"] == "logged-1"]
    project.close()
    assert len(rows) == 1
    record = rows[0]
    assert record["entity.origin"] == "LGA"
    assert record["entity.tailnum"] == "N3"
    assert record["model_version"] == "flight_delay:1"
    assert record["status"] == "ok"
    assert record["protocol"] == "native"
    assert "weather" in record["feature_versions"]
    assert record["feature.dep_hour"] == 8
    assert record["output"] == response.json()["prediction"]
    assert record["latency_ms"] > 0
    # Online freshness per view: how old the served values were, and whether stale.
    assert record["feature_age.weather"] >= 0
    assert record["feature_stale.weather"] is False
