"""Lineage: a version back to its run, training sets, feature-view versions and sources,
and forward from a dataset or a feature view to the versions trained on it. The feature
layer's rows are written directly, as the feature store would have."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from typing import Any

import pytest

from prodml.core import DatasetNotFoundError, DefinitionError, FeatureNotFoundError
from prodml.registry import ModelRegistry, ModelVersion
from prodml.storage._models import DatasetRow, FeatureDefinitionRow

W1, W2 = "aa11" + "0" * 60, "aa22" + "0" * 60  # two versions of the weather view
P1, S1, SVC = "bb" * 32, "cc" * 32, "ee" * 32
D1, D2 = "dddd0000" + "1" * 56, "dddd0000" + "2" * 56  # share an 8-digit prefix
D3, D4, D5 = "eeeeeeee" + "3" * 56, "f4" * 32, "f5" * 32  # D5: logged, never recorded
T = datetime(2024, 1, 1, tzinfo=UTC)
WEATHER_SOURCE = {"type": "parquet", "path": "data/weather.parquet", "timestamp": "time_hour"}
PLANES_SOURCE = {"type": "parquet", "path": "data/planes.parquet"}


def _definition(kind: str, name: str, version: str, spec: dict[str, Any]) -> FeatureDefinitionRow:
    return FeatureDefinitionRow(
        kind=kind, name=name, version=version, spec=json.dumps(spec), created_at=T
    )


def _dataset(fingerprint: str, views: dict[str, str] | str, rows: int) -> DatasetRow:
    return DatasetRow(
        fingerprint=fingerprint,
        path=f"datasets/{fingerprint}.parquet",
        row_count=rows,
        start_time=T,
        end_time=None,
        service_name="flight_delay",
        service_version=SVC,
        timestamp_column="time_hour",
        label_column="late",
        feature_versions=views,  # type: ignore[arg-type]  # D4: 0.1.0 stored JSON text
        profile={},
        created_at=T,
    )


@pytest.fixture
def lineage_env(env_any: Any, registrar: Any) -> tuple[ModelRegistry, dict[str, ModelVersion]]:
    with env_any.db.session() as session:
        session.add_all(
            [
                _definition("feature_view", "weather", W1, {"source": WEATHER_SOURCE, "ttl": 1}),
                _definition("feature_view", "weather", W2, {"source": WEATHER_SOURCE, "ttl": 2}),
                _definition("feature_view", "planes", P1, {"source": PLANES_SOURCE}),
                _definition("on_demand_feature", "speed", S1, {"inputs": ["distance", "air_time"]}),
                _definition("entity", "flight", "ab" * 32, {"join_keys": ["flight"]}),
                _dataset(D1, {"weather": W1, "planes": P1, "gone": "99" * 32}, 100),
                _dataset(D2, {"weather": W2, "speed": S1}, 200),
                _dataset(D3, {"planes": P1}, 300),
                _dataset(D4, json.dumps({"weather": W1}), 400),
            ]
        )
    reg: ModelRegistry = env_any.registry
    register = registrar(reg)
    versions: dict[str, ModelVersion] = {}
    with reg.start_run("m", seed=3, service=("flight_delay", SVC), parent="m:0") as r1:
        r1.log_dataset(D1, "train")
        r1.log_dataset(D2, "validation")
        r1.log_dataset(D5, "test")
    versions["m:1"] = register("m", run_id=r1.id, source="train.py")
    with reg.start_run("m", environment=False) as r2:
        r2.log_dataset(D2, "train")
    versions["m:2"] = register("m", run_id=r2.id)
    versions["other:1"] = register("other", run_id=r2.id)
    with reg.start_run("m", environment=False) as r3:
        r3.log_dataset(D4, "train")
    versions["m:3"] = register("m", run_id=r3.id)
    versions["m:4"] = register("m")  # no run
    return reg, versions


def test_lineage_goes_from_version_to_sources(
    lineage_env: tuple[ModelRegistry, dict[str, ModelVersion]],
) -> None:
    reg, versions = lineage_env
    one = versions["m:1"]
    run = reg.get_run(str(one.run_id))
    weather = {"name": "weather", "version": W1, "kind": "feature_view", "source": WEATHER_SOURCE}
    assert reg.lineage("m:1") == {
        "version": "m:1",
        "artifact": one.artifact_digest,
        "source": "train.py",
        "run": {
            "id": run.id,
            "status": "finished",
            "seed": 3,
            "code": {},
            "service": "flight_delay",
            "service_version": SVC,
            "parent_version": "m:0",
            "python": platform.python_version(),
            "start_time": run.start_time.isoformat(),
            "end_time": run.end_time.isoformat() if run.end_time else None,
        },
        "datasets": [
            {"role": "test", "fingerprint": D5, "recorded": False},
            {
                "role": "train",
                "fingerprint": D1,
                "recorded": True,
                "rows": 100,
                "start_time": T.isoformat(),
                "end_time": None,
                "service": "flight_delay",
                "service_version": SVC,
                "label": "late",
                "feature_views": [
                    {"name": "gone", "version": "99" * 32, "kind": None, "source": None},
                    {
                        "name": "planes",
                        "version": P1,
                        "kind": "feature_view",
                        "source": PLANES_SOURCE,
                    },
                    weather,
                ],
            },
            {
                "role": "validation",
                "fingerprint": D2,
                "recorded": True,
                "rows": 200,
                "start_time": T.isoformat(),
                "end_time": None,
                "service": "flight_delay",
                "service_version": SVC,
                "label": "late",
                "feature_views": [
                    {
                        "name": "speed",
                        "version": S1,
                        "kind": "on_demand_feature",
                        "source": {"type": "on_demand", "inputs": ["distance", "air_time"]},
                    },
                    {**weather, "version": W2},
                ],
            },
        ],
    }
    three = reg.lineage("m:3")
    assert [d["fingerprint"] for d in three["datasets"]] == [D4]
    assert three["datasets"][0]["feature_views"] == [weather]  # JSON text read back
    assert reg.lineage("m:4") == {
        "version": "m:4",
        "artifact": versions["m:4"].artifact_digest,
        "source": None,
        "run": None,
        "datasets": [],
    }


def test_used_by_a_dataset(lineage_env: tuple[ModelRegistry, dict[str, ModelVersion]]) -> None:
    reg, _ = lineage_env
    assert reg.used_by(dataset=D1) == {"dataset": D1, "versions": ["m:1"]}
    assert reg.used_by(dataset=D2)["versions"] == ["m:1", "m:2", "other:1"]
    assert reg.used_by(dataset=D2[:9])["versions"] == ["m:1", "m:2", "other:1"]
    assert reg.used_by(dataset=D3[:8])["versions"] == []  # recorded, never trained on
    assert reg.used_by(dataset=D5[:12])["versions"] == ["m:1"]  # trained on, not recorded


def test_used_by_a_feature_view(lineage_env: tuple[ModelRegistry, dict[str, ModelVersion]]) -> None:
    reg, _ = lineage_env
    assert reg.used_by(feature_view="weather") == {
        "feature_view": "weather",
        "datasets": sorted([D1, D2, D4]),
        "versions": ["m:1", "m:2", "m:3", "other:1"],
    }
    assert reg.used_by(feature_view="weather:aa")["datasets"] == sorted([D1, D2, D4])
    assert reg.used_by(feature_view="weather:aa1") == {
        "feature_view": "weather:aa1",
        "datasets": sorted([D1, D4]),
        "versions": ["m:1", "m:3"],
    }
    assert reg.used_by(feature_view=f"weather:{W2}")["versions"] == ["m:1", "m:2", "other:1"]
    assert reg.used_by(feature_view="planes") == {
        "feature_view": "planes",
        "datasets": sorted([D1, D3]),
        "versions": ["m:1"],
    }
    assert reg.used_by(feature_view="speed")["versions"] == ["m:1", "m:2", "other:1"]


def test_an_unknown_feature_view_is_not_found(
    lineage_env: tuple[ModelRegistry, dict[str, ModelVersion]],
) -> None:
    reg, _ = lineage_env
    for feature_view, message in [
        ("ghost", r"feature view 'ghost' has never been applied"),
        ("flight", r"feature view 'flight' has never been applied"),  # an entity
        ("weather:ff", r"feature view 'weather' has no version starting 'ff'; known: aa11"),
        (f"weather:{W1}0", r"feature view 'weather' has no version starting"),
        ("weather:AA11", r"feature view 'weather' has no version starting 'AA11'"),
    ]:
        with pytest.raises(FeatureNotFoundError, match=message):
            reg.used_by(feature_view=feature_view)


def test_a_short_or_ambiguous_fingerprint_is_not_found(
    lineage_env: tuple[ModelRegistry, dict[str, ModelVersion]],
) -> None:
    reg, _ = lineage_env
    for prefix, matches in [
        (D3[:7], "1 match"),  # unique but shorter than 8
        ("dddd0000", "2 match"),  # ambiguous
        ("dddd", "2 match"),
        ("0123abcd", "0 match"),
        ("eeeeeee_", "0 match"),  # LIKE wildcards are not hex digits
        ("%%%%%%%%", "0 match"),
        ("", "5 match"),
        ("f" * 64, "0 match"),  # a full fingerprint never recorded
    ]:
        with pytest.raises(DatasetNotFoundError, match=rf"fingerprint {prefix!r} \({matches}"):
            reg.used_by(dataset=prefix)


def test_used_by_needs_exactly_one_question(env: Any) -> None:
    reg: ModelRegistry = env.registry
    with pytest.raises(DefinitionError, match="exactly one"):
        reg.used_by()
    with pytest.raises(DefinitionError, match="exactly one"):
        reg.used_by(dataset=D1, feature_view="weather")
