"""``POST /v1/feedback`` cannot be used to fill the disk: unknown endpoints, times
outside the accepted window and batches over ``[serving] feedback_max_items`` are
refused before anything is written, and ``feedback_requires_token`` asks for a token
whose role may post feedback (labeler, operator, admin; not viewer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prodml import Project
from prodml.project import serving_app
from servingkit import TOKEN, ProjectFactory, bearer, tokens_toml

LABELER, VIEWER, OPERATOR = TOKEN["labeler"], TOKEN["viewer"], TOKEN["operator"]
TOKENS = tokens_toml("labeler", "viewer", "operator")


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def label_files(project: Project) -> list[Path]:
    return sorted((project.state_dir / "logs" / "labels").rglob("*"))


@pytest.fixture
def make(make_project: ProjectFactory) -> Any:
    """A served project (``make_project``) and a client of its app."""

    def build(config: str = "") -> tuple[Project, TestClient]:
        project, _ = make_project(config)
        return project, TestClient(serving_app(project))

    return build


def test_ten_thousand_invented_endpoints_are_refused_and_create_nothing(make: Any) -> None:
    project, client = make("[serving]\nfeedback_max_items = 10000\n")
    now = datetime.now(UTC)
    items = [
        {
            "endpoint": f"invented-{i}",
            "request_id": f"r-{i}",
            "label": 1,
            "time": iso(now - timedelta(hours=i % 48)),
        }
        for i in range(10_000)
    ]
    items[0]["endpoint"] = "lr"  # one known endpoint does not let the rest through
    with client:
        response = client.post("/v1/feedback", json={"items": items})
    assert response.status_code == 404, response.text
    details = response.json()["details"]
    assert len(details) == 9_999
    assert details[0] == {
        "field": "items[1].endpoint",
        "problem": "unknown endpoint",
        "expected": "one of ['lr']",
    }
    assert "invented" not in response.text
    assert label_files(project) == []


@pytest.mark.parametrize(
    ("field", "shift"),
    [
        ("time", timedelta(hours=2)),
        ("time", -timedelta(days=120)),
        ("event_time", timedelta(days=3)),
        ("event_time", -timedelta(days=400)),
    ],
)
def test_times_outside_the_window_are_refused_and_nothing_is_written(
    make: Any, field: str, shift: timedelta
) -> None:
    project, client = make()
    now = datetime.now(UTC)
    good = {"endpoint": "lr", "entities": {"customer": 1}, "event_time": iso(now), "label": 1}
    bad = {**good, field: iso(now + shift)}
    with client:
        response = client.post("/v1/feedback", json={"items": [good, bad, good]})
    assert response.status_code == 422, response.text
    [problem] = response.json()["details"]
    assert problem["field"] == f"items[1].{field}"
    assert problem["problem"] == "outside the accepted window"
    expected = problem["expected"]
    assert "feedback_max_age_days = 90 days" in expected
    assert "5 minutes" in expected
    assert label_files(project) == []


def test_times_inside_the_window_are_accepted(make: Any) -> None:
    _, client = make("[serving]\nfeedback_max_age_days = 10\n")
    now = datetime.now(UTC)
    items = [
        {"endpoint": "lr", "request_id": "r-1", "label": 1, "time": iso(now - timedelta(days=9))},
        {
            "endpoint": "lr",
            "request_id": "r-2",
            "label": 0,
            "time": iso(now + timedelta(minutes=1)),
        },
        {
            "endpoint": "lr",
            "entities": {"customer": 7},
            "event_time": iso(now - timedelta(days=9, hours=23)),
            "label": 1,
        },
    ]
    with client:
        response = client.post("/v1/feedback", json={"items": items})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 3
        old = {**items[0], "time": iso(now - timedelta(days=11))}
        response = client.post("/v1/feedback", json=old)
    assert response.status_code == 422, response.text
    assert "10 days" in response.json()["details"][0]["expected"]


def test_items_over_the_cap_are_refused_with_413(make: Any) -> None:
    project, client = make()
    item = {"endpoint": "lr", "request_id": "r-1", "label": 1}
    with client:
        response = client.post("/v1/feedback", json={"items": [item] * 1001})
        assert response.status_code == 413, response.text
        message = response.json()["error"]
        assert "the limit is 1000 per request ([serving] feedback_max_items)" in message
        assert label_files(project) == []
        assert client.post("/v1/feedback", json={"items": [item] * 1000}).status_code == 200
    project, client = make("[serving]\nfeedback_max_items = 5\n")
    with client:
        response = client.post("/v1/feedback", json={"items": [item] * 6})
    assert response.status_code == 413
    assert "5" in response.json()["error"]


def test_many_items_of_one_hour_make_one_file(make: Any) -> None:
    project, client = make()
    now = datetime.now(UTC).replace(minute=30)
    if now > datetime.now(UTC):
        now -= timedelta(hours=1)
    items = [
        {"endpoint": "lr", "request_id": f"r-{i}", "label": i % 2, "time": iso(now)}
        for i in range(1000)
    ]
    with client:
        assert client.post("/v1/feedback", json={"items": items}).status_code == 200
    files = [p for p in label_files(project) if p.suffix == ".parquet"]
    assert len(files) == 1


def test_feedback_can_require_a_token_whose_role_may_post_it(make: Any) -> None:
    config = "[serving]\nfeedback_requires_token = true\n" + TOKENS
    project, client = make(config)
    item = {"endpoint": "lr", "request_id": "r-1", "label": 1}
    with client:
        for headers in ({}, bearer("not-a-known-token-at-all")):
            response = client.post("/v1/feedback", json=item, headers=headers)
            assert response.status_code == 401, response.text
        response = client.post("/v1/feedback", json=item, headers=bearer(VIEWER))
        assert response.status_code == 403, response.text
        assert "labeler" in response.json()["error"]
        assert label_files(project) == []
        for token in (LABELER, OPERATOR):
            response = client.post("/v1/feedback", json=item, headers=bearer(token))
            assert response.status_code == 200, response.text
        # a labeler posts feedback and nothing else
        body = {"inputs": [{"name": "f0", "shape": [1], "datatype": "FP64", "data": [0.0]}]}
        assert client.get("/v1/admin/deployments", headers=bearer(LABELER)).status_code == 403
        answer = client.post("/v2/models/lr/infer", json=body, headers=bearer(LABELER))
        assert answer.status_code != 403  # predict needs no token here
        schema = client.get("/openapi.json").json()
    answers = schema["paths"]["/v1/feedback"]["post"]["responses"]
    assert {"401", "403"} <= answers.keys()


def test_feedback_without_the_setting_needs_no_token(make: Any) -> None:
    _, client = make(TOKENS)
    with client:
        response = client.post(
            "/v1/feedback", json={"endpoint": "lr", "request_id": "r", "label": 1}
        )
        assert response.status_code == 200, response.text
        schema = client.get("/openapi.json").json()
    assert "401" not in schema["paths"]["/v1/feedback"]["post"]["responses"]
