"""The native protocol refuses what it cannot honour, by name: column-form batches are
N rows in and N predictions out, entity keys and request fields are checked against the
types the model was trained on, and an entity with no row in the online store is
counted, logged and — by the endpoint's ``on_missing_entity`` policy — served with a
warning, served, or refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.core import SimulatedClock
from prodml.project import serving_app
from prodml.registry import DeploymentSpec
from prodml.storage import read_log
from trainkit import END, make_served_project

PREDICT = "/v1/endpoints/{}/predict"


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("native-contract") / "p"
    ref = "flight_delay:1"
    single = DeploymentSpec.single
    make_served_project(
        root,
        {
            "flight_delay": single(ref),
            "strict": single(ref, on_missing_entity="refuse"),
            "lenient": single(ref, on_missing_entity="serve"),
        },
    )
    return root


@pytest.fixture
def client(project_dir: Path) -> Iterator[tuple[TestClient, Project]]:
    project = Project.open(project_dir, clock=SimulatedClock(END))
    with TestClient(serving_app(project)) as client:
        yield client, project
    project.close()


def _post(http: TestClient, body: dict[str, Any], endpoint: str = "flight_delay") -> Any:
    return http.post(PREDICT.format(endpoint), json=body)


def _fields(response: Any) -> list[str]:
    return [d["field"] for d in response.json().get("details", [])]


# -- 1. column-form batches ---------------------------------------------------------------
def test_column_form_gives_one_prediction_per_row_equal_to_the_row_form(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    keys = [("EWR", "N1", 615), ("JFK", "N3", 1200), ("LGA", "N2", 2100)]
    columns = {
        "entities": {"origin": [k[0] for k in keys], "tailnum": [k[1] for k in keys]},
        "request_data": {"sched_dep_time": [k[2] for k in keys]},
    }
    rows = {
        "entities": [{"origin": o, "tailnum": t} for o, t, _ in keys],
        "request_data": [{"sched_dep_time": s} for _, _, s in keys],
    }
    by_columns = _post(http, columns)
    by_rows = _post(http, rows)
    assert by_columns.status_code == 200, by_columns.text
    assert by_rows.status_code == 200, by_rows.text
    assert len(by_columns.json()["predictions"]) == 3
    assert by_columns.json()["predictions"] == by_rows.json()["predictions"]


def test_column_form_entities_with_one_row_of_request_data(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    body = {
        "entities": {"origin": ["EWR", "JFK"], "tailnum": ["N1", "N2"]},
        "request_data": {"sched_dep_time": 900},
    }
    response = _post(http, body)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


def test_column_form_is_logged_row_by_row(project_dir: Path) -> None:
    project = Project.open(project_dir, clock=SimulatedClock(END))
    with TestClient(serving_app(project)) as http:
        body = {
            "entities": {"origin": ["EWR", "LGA"], "tailnum": ["N1", "N3"]},
            "request_data": {"sched_dep_time": [700, 1900]},
            "id": "columns-logged",
        }
        response = _post(http, body)
        assert response.status_code == 200, response.text
    table = read_log(project.state_dir / "logs" / "predictions", partition="flight_delay")
    project.close()
    rows = sorted(
        (r for r in table.to_pylist() if r["request_id"] == "columns-logged"),
        key=lambda r: r["row"],
    )
    assert [(r["entity.origin"], r["entity.tailnum"]) for r in rows] == [
        ("EWR", "N1"),
        ("LGA", "N3"),
    ]
    assert [r["feature.dep_hour"] for r in rows] == [7, 19]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (  # ragged columns
            {"entities": {"origin": ["EWR", "JFK"], "tailnum": ["N1"]}},
            ["entities.tailnum"],
        ),
        (  # a list beside a scalar
            {"entities": {"origin": ["EWR", "JFK"], "tailnum": "N1"}},
            ["entities.tailnum"],
        ),
        (  # an empty column
            {"entities": {"origin": [], "tailnum": []}},
            ["entities"],
        ),
        (  # request data of another length than the entities
            {
                "entities": {"origin": ["EWR", "JFK"], "tailnum": ["N1", "N2"]},
                "request_data": {"sched_dep_time": [1, 2, 3]},
            },
            ["request_data"],
        ),
        (  # a nested list in a row
            {"entities": [{"origin": ["EWR"], "tailnum": "N1"}]},
            ["entities.origin"],
        ),
    ],
)
def test_malformed_column_form_is_refused_by_field(
    client: tuple[TestClient, Project], body: dict[str, Any], fields: list[str]
) -> None:
    http, _ = client
    body.setdefault("request_data", {"sched_dep_time": 900})
    response = _post(http, body)
    assert response.status_code == 422, response.text
    assert _fields(response) == fields


# -- 2. types of entity keys and request fields --------------------------------------------
@pytest.mark.parametrize(
    ("entities", "request_data", "field", "declared", "given"),
    [
        ({"origin": 15, "tailnum": "N1"}, {"sched_dep_time": 900}, "entities.origin", "string", "int"),
        ({"origin": "EWR", "tailnum": True}, {"sched_dep_time": 900}, "entities.tailnum", "string", "bool"),
        ({"origin": "EWR", "tailnum": "N1"}, {"sched_dep_time": "abc"}, "request_data.sched_dep_time", "int64", "str"),
        ({"origin": "EWR", "tailnum": "N1"}, {"sched_dep_time": "900"}, "request_data.sched_dep_time", "int64", "str"),
        ({"origin": "EWR", "tailnum": "N1"}, {"sched_dep_time": 9.5}, "request_data.sched_dep_time", "int64", "not a whole"),
    ],
)  # fmt: skip
def test_mistyped_key_or_field_is_refused_naming_it_its_type_and_the_values_type(
    client: tuple[TestClient, Project],
    entities: dict[str, Any],
    request_data: dict[str, Any],
    field: str,
    declared: str,
    given: str,
) -> None:
    """``given``: the value's type, or what is wrong with it, as the problem names it."""
    http, _ = client
    response = _post(http, {"entities": entities, "request_data": request_data})
    assert response.status_code == 422, response.text
    details = response.json()["details"]
    assert [d["field"] for d in details] == [field]
    assert declared in details[0]["expected"]
    assert given in details[0]["problem"]
    assert "abc" not in response.text


def test_a_null_entity_key_is_refused(client: tuple[TestClient, Project]) -> None:
    http, _ = client
    body = {"entities": {"origin": None, "tailnum": "N1"}, "request_data": {"sched_dep_time": 1}}
    response = _post(http, body)
    assert response.status_code == 422, response.text
    assert _fields(response) == ["entities.origin"]


def test_a_whole_float_for_an_integer_field_is_taken_losslessly(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    entities = {"origin": "EWR", "tailnum": "N1"}
    as_float = _post(http, {"entities": entities, "request_data": {"sched_dep_time": 900.0}})
    as_int = _post(http, {"entities": entities, "request_data": {"sched_dep_time": 900}})
    assert as_float.status_code == 200, as_float.text
    assert as_float.json()["prediction"] == as_int.json()["prediction"]


# -- 3. entities with no row in the online store --------------------------------------------
UNKNOWN_PLANE = {"entities": {"origin": "EWR", "tailnum": "N9"}, "request_data": {"sched_dep_time": 900}}  # fmt: skip


def test_missing_entity_is_served_with_a_warning_naming_the_view_by_default(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    response = _post(http, UNKNOWN_PLANE)
    assert response.status_code == 200, response.text
    data = response.json()
    assert "planes: missing_entity" in data["warnings"]
    assert not any(w.startswith("weather") for w in data["warnings"])
    metrics = http.get("/metrics").text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("prodml_missing_entities_total")
        and 'endpoint="flight_delay"' in line
        and 'view="planes"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1


def test_missing_entity_is_logged_as_a_violation(project_dir: Path) -> None:
    project = Project.open(project_dir, clock=SimulatedClock(END))
    with TestClient(serving_app(project)) as http:
        response = _post(http, {**UNKNOWN_PLANE, "id": "missing-logged"})
        assert response.status_code == 200, response.text
    table = read_log(project.state_dir / "logs" / "predictions", partition="flight_delay")
    project.close()
    [record] = [r for r in table.to_pylist() if r["request_id"] == "missing-logged"]
    assert "planes:missing_entity" in record["violations"].split(";")


def test_found_entities_carry_no_missing_entity_warning(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    body = {"entities": {"origin": "EWR", "tailnum": "N1"}, "request_data": {"sched_dep_time": 900}}
    response = _post(http, body)
    assert response.status_code == 200, response.text
    assert not any("missing_entity" in w for w in response.json().get("warnings", []))


def test_refuse_policy_answers_422_naming_the_view_and_its_keys(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    response = _post(http, UNKNOWN_PLANE, endpoint="strict")
    assert response.status_code == 422, response.text
    data = response.json()
    assert "planes" in data["error"]
    assert _fields(response) == ["entities.tailnum"]
    assert "N9" not in response.text


def test_refuse_policy_in_a_batch_names_the_rows(client: tuple[TestClient, Project]) -> None:
    http, _ = client
    body = {
        "entities": {"origin": ["EWR", "EWR", "JFK"], "tailnum": ["N1", "N9", "N8"]},
        "request_data": {"sched_dep_time": 900},
    }
    response = _post(http, body, endpoint="strict")
    assert response.status_code == 422, response.text
    [detail] = response.json()["details"]
    assert "rows [1, 2]" in detail["problem"]


def test_serve_policy_answers_without_a_warning_but_still_counts(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    response = _post(http, UNKNOWN_PLANE, endpoint="lenient")
    assert response.status_code == 200, response.text
    assert not any("missing_entity" in w for w in response.json().get("warnings", []))
    assert 'endpoint="lenient",view="planes"' in http.get("/metrics").text


def test_the_serving_default_is_configurable(tmp_path: Path, project_dir: Path) -> None:
    root = tmp_path / "p"
    shutil.copytree(project_dir, root)
    config = root / "prodml.toml"
    assert "[serving]" not in config.read_text()
    config.write_text(config.read_text() + '\n[serving]\non_missing_entity = "refuse"\n')
    project = Project.open(root, clock=SimulatedClock(END))
    try:
        with TestClient(serving_app(project)) as http:
            assert _post(http, UNKNOWN_PLANE).status_code == 422
            assert _post(http, UNKNOWN_PLANE, endpoint="lenient").status_code == 200
    finally:
        project.close()


# -- 4 and 5. idempotency and feedback on a trained endpoint --------------------------------
def test_a_reused_idempotency_key_is_refused_and_a_reused_id_answered_afresh(
    client: tuple[TestClient, Project],
) -> None:
    http, _ = client
    body = {"entities": {"origin": "EWR", "tailnum": "N1"}, "request_data": {"sched_dep_time": 900}}
    later = {**body, "request_data": {"sched_dep_time": 2100}}
    key = {"Idempotency-Key": "native-key"}
    first = http.post(PREDICT.format("flight_delay"), json=body, headers=key)
    retry = http.post(PREDICT.format("flight_delay"), json=body, headers=key)
    other = http.post(PREDICT.format("flight_delay"), json=later, headers=key)
    assert first.status_code == 200, first.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422, other.text
    assert _fields(other) == ["Idempotency-Key"]
    # a body id is a correlation id, not a key ([serving] idempotency_from_body_id = false)
    by_id = _post(http, {**body, "id": "native-7"})
    again = _post(http, {**body, "id": "native-7"})
    afresh = _post(http, {**later, "id": "native-7"})
    assert by_id.status_code == again.status_code == afresh.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["prediction"] == by_id.json()["prediction"]
    assert "Idempotent-Replayed" not in afresh.headers
    assert afresh.json()["prediction"] != by_id.json()["prediction"]


@pytest.mark.parametrize(("label", "status"), [(1, 200), (False, 200), (0.5, 422), (2, 422)])
def test_feedback_for_a_classifier_takes_binary_labels_only(
    client: tuple[TestClient, Project], label: Any, status: int
) -> None:
    http, _ = client
    item = {"endpoint": "flight_delay", "request_id": "r-1", "label": label}
    response = http.post("/v1/feedback", json=item)
    assert response.status_code == status, response.text
    if status == 422:
        assert "binary classifier" in response.json()["details"][0]["expected"]
