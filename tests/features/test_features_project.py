"""The feature layer end to end through the public ``Project`` interface."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurekit import FEATURES_PY, T0, entity_rows, make_project
from prodml import Project
from prodml.core import (
    FeatureNotFoundError,
    SchemaError,
    SourceError,
    TimestampError,
)


def test_apply_versions_and_old_versions_stay_readable(project: Project) -> None:
    first = project.features.apply()
    assert {d.status for d in first} == {"created"}
    assert {(d.kind, d.name) for d in first} >= {
        ("feature_view", "weather"),
        ("feature_service", "flight_delay"),
    }
    assert {d.status for d in project.features.apply()} == {"unchanged"}
    (project.root / "features.py").write_text(FEATURES_PY.replace("hours=3", "hours=4"))
    changed = {(d.kind, d.name): d.status for d in project.features.apply()}
    assert changed[("feature_view", "weather")] == "updated"
    assert changed[("feature_service", "flight_delay")] == "updated"
    assert changed[("feature_view", "planes")] == "unchanged"
    versions = project.features.registry.versions("feature_view", "weather")
    assert len(versions) == 2
    assert versions[0].spec["ttl_seconds"] == 3 * 3600
    assert project.features.registry.get("feature_view", "weather").spec["ttl_seconds"] == 4 * 3600


def test_training_set_shape_order_and_snapshot(project: Project) -> None:
    project.features.apply()
    rows = entity_rows(80)
    shuffled = rows.take(pa.array(list(reversed(range(rows.num_rows)))))
    duplicated = pa.concat_tables([shuffled, shuffled.slice(0, 5)])
    ts = project.features.build_training_set(
        duplicated, "flight_delay", timestamp="sched_dep", label="late"
    )
    table = ts.to_arrow()
    assert table.num_rows == duplicated.num_rows
    assert table.column_names == [
        *duplicated.column_names,
        "temp",
        "wind_speed",
        "year",
        "seats",
        "dep_hour",
        "warm",
    ]
    assert table.select(duplicated.column_names).equals(duplicated)
    assert table["dep_hour"].to_pylist() == [
        v // 100 for v in duplicated["sched_dep_time"].to_pylist()
    ]
    unknown_origin = pc.equal(table["origin"], "XXX")
    assert table.filter(unknown_origin)["temp"].null_count == pc.sum(unknown_origin).as_py()
    assert ts.path.exists()
    assert ts.fingerprint in ts.path.name
    again = project.features.get_training_set(ts.fingerprint[:12])
    assert again.table.equals(table)
    assert again.feature_versions == ts.feature_versions
    assert ts.profile.row_count == table.num_rows
    assert ts.to_pandas().shape == (table.num_rows, table.num_columns)


def test_pandas_entity_rows_work(project: Project) -> None:
    project.features.apply()
    df = entity_rows(20).to_pandas()
    ts = project.features.build_training_set(df, "flight_delay", timestamp="sched_dep")
    assert ts.num_rows == 20


def _no_snapshot_written(project: Project) -> None:
    directory = project.root / ".prodml" / "datasets"
    assert not directory.exists() or not list(directory.iterdir())


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ("drop_column", SchemaError, "feature view 'weather': source has no column 'wind_speed'"),
        (
            "string_temp",
            SchemaError,
            "feature view 'weather': column 'temp' has type string; expected float64",
        ),
        ("naive_time", TimestampError, "weather"),
        ("missing_file", SourceError, "feature view 'weather': Parquet source"),
    ],
)
def test_bad_sources_fail_clearly_and_write_nothing(
    project: Project, change: str, error: type[Exception], message: str
) -> None:
    project.features.apply()
    path = project.root / "data" / "weather.parquet"
    table = pq.read_table(path)
    if change == "drop_column":
        pq.write_table(table.drop(["wind_speed"]), path)
    elif change == "string_temp":
        pq.write_table(table.set_column(3, "temp", pc.cast(table["temp"], pa.string())), path)
    elif change == "naive_time":
        naive = pc.cast(table["time_hour"], pa.timestamp("us"))
        pq.write_table(table.set_column(1, "time_hour", naive), path)
    else:
        path.unlink()
    with pytest.raises(error, match=message):
        project.features.build_training_set(entity_rows(10), "flight_delay", timestamp="sched_dep")
    _no_snapshot_written(project)


def test_bad_entity_rows_fail_clearly(project: Project) -> None:
    project.features.apply()
    rows = entity_rows(10)
    with pytest.raises(TimestampError, match="no timestamp column 'event_timestamp'"):
        project.features.build_training_set(rows, "flight_delay")
    with pytest.raises(
        SchemaError, match="no join key column 'tailnum' required by feature view 'planes'"
    ):
        project.features.build_training_set(
            rows.drop(["tailnum"]), "flight_delay", timestamp="sched_dep"
        )
    with pytest.raises(FeatureNotFoundError, match="unknown feature service 'nope'"):
        project.features.build_training_set(rows, "nope", timestamp="sched_dep")
    with pytest.raises(SchemaError, match="no label column 'label'"):
        project.features.build_training_set(
            rows, "flight_delay", timestamp="sched_dep", label="label"
        )
    nulls = rows.set_column(3, "sched_dep", pa.array([None] * 10, pa.timestamp("us", tz="UTC")))
    with pytest.raises(TimestampError, match=r"10 null value"):
        project.features.build_training_set(nulls, "flight_delay", timestamp="sched_dep")
    as_text = rows.set_column(3, "sched_dep", pc.cast(rows["sched_dep"], pa.string()))
    with pytest.raises(TimestampError, match="expected a timestamp"):
        project.features.build_training_set(as_text, "flight_delay", timestamp="sched_dep")
    naive = rows.set_column(3, "sched_dep", pc.cast(rows["sched_dep"], pa.timestamp("us")))
    with pytest.raises(TimestampError, match="weather"):
        project.features.build_training_set(naive, "flight_delay", timestamp="sched_dep")
    _no_snapshot_written(project)


def test_unapplied_or_changed_definitions_are_refused(project: Project) -> None:
    with pytest.raises(FeatureNotFoundError, match="has not been applied"):
        project.features.build_training_set(entity_rows(5), "flight_delay", timestamp="sched_dep")
    project.features.apply()
    (project.root / "features.py").write_text(FEATURES_PY.replace("hours=3", "hours=5"))
    project.features.reload()
    with pytest.raises(FeatureNotFoundError, match="differs from the applied version"):
        project.features.build_training_set(entity_rows(5), "flight_delay", timestamp="sched_dep")


def test_online_offline_consistency_after_materialize(project: Project) -> None:
    project.features.apply()
    end = T0 + timedelta(days=6, hours=7, minutes=10)
    results = project.features.materialize(end=end)
    assert {r.view for r in results} == {"weather", "planes"}
    entities = {"origin": ["EWR", "JFK", "LGA", "XXX"], "tailnum": ["N1", "N2", "N3", "N9"]}
    request = {"sched_dep_time": [517, 1230, 2359, 800]}
    online = project.features.get_online("flight_delay", entities, request, now=end)
    rows = pa.table(
        {
            **{k: pa.array(v) for k, v in entities.items()},
            "sched_dep": pa.array([end] * 4, pa.timestamp("us", tz="UTC")),
            **{k: pa.array(v) for k, v in request.items()},
        }
    )
    offline = project.features.build_training_set(
        rows, "flight_delay", timestamp="sched_dep"
    ).to_arrow()
    for name in online.values:
        assert online.values[name] == offline[name].to_pylist(), name
    assert online.freshness["weather"].found == [True, True, True, False]
    assert online.versions["weather"] == project.features.repo.view("weather").version
    assert all(
        age is not None and age <= 3 * 3600 for age in online.freshness["weather"].ages_s[:3]
    )


def test_materialize_is_incremental_idempotent_and_resumable(project: Project) -> None:
    project.features.apply()
    mid = T0 + timedelta(days=3)
    end = T0 + timedelta(days=9)
    first = {r.view: r for r in project.features.materialize(end=mid)}
    assert first["weather"].rows_written > 0
    repeat = {r.view: r for r in project.features.materialize(end=mid)}
    assert repeat["weather"].chunks == 0
    assert repeat["weather"].rows_read == 0
    rest = {r.view: r for r in project.features.materialize(end=end)}
    assert rest["weather"].start == mid
    # one run straight to `end` in a fresh project gives the same online state
    fresh_root = project.root.parent / "fresh"
    fresh = make_project(fresh_root)
    fresh.features.apply()
    fresh.features.materialize(end=end)
    entities = {"origin": ["EWR", "JFK", "LGA"], "tailnum": ["N1", "N2", "N3"]}
    request = {"sched_dep_time": [517, 1230, 2359]}
    a = project.features.get_online("flight_delay", entities, request, now=end)
    b = fresh.features.get_online("flight_delay", entities, request, now=end)
    fresh.close()
    assert a.values == b.values


def test_stale_values_are_null_and_flagged(project: Project) -> None:
    project.features.apply()
    end = T0 + timedelta(days=2)
    project.features.materialize(end=end)
    later = end + timedelta(hours=5)
    online = project.features.get_online(
        "flight_delay", {"origin": ["EWR"], "tailnum": ["N1"]}, {"sched_dep_time": [900]}, now=later
    )
    assert online.freshness["weather"].stale == [True]
    assert online.values["temp"] == [None]
    assert online.values["year"] == [2001]


def test_unknown_entity_key_in_online_read(project: Project) -> None:
    project.features.apply()
    with pytest.raises(SchemaError, match=r"unknown entity key\(s\) \['airport'\]"):
        project.features.get_online(
            "flight_delay", {"airport": ["EWR"], "origin": ["EWR"], "tailnum": ["N1"]}
        )
    with pytest.raises(SchemaError, match=r"entity key\(s\) \['tailnum'\] not given"):
        project.features.get_online("flight_delay", {"origin": ["EWR"]})


def test_init_refuses_existing_project(tmp_path: Path) -> None:
    from prodml.core import ConflictError

    Project.init(tmp_path).close()
    with pytest.raises(ConflictError, match="already a prodml project"):
        Project.init(tmp_path)
    assert ".prodml/" in (tmp_path / ".gitignore").read_text()


def test_declared_expectations_gate_the_training_set(project: Project) -> None:
    from prodml.core import DataValidationError
    from prodml.validation import infer_expectations, profile

    weather = pq.read_table(project.root / "data" / "weather.parquet").select(
        ["temp", "wind_speed"]
    )
    expectations = infer_expectations(profile(weather), range_tolerance=0.0)
    tightened = expectations.columns["temp"].model_copy(
        update={
            "range": expectations.columns["temp"].range.model_copy(
                update={"max": 30.0, "severity": "error"}
            )
        }
    )
    expectations = expectations.model_copy(
        update={"columns": {**expectations.columns, "temp": tightened}}
    )
    (project.root / "expectations").mkdir()
    expectations.save(project.root / "expectations" / "weather.json")
    text = FEATURES_PY.replace(
        "ttl=timedelta(hours=3),",
        'ttl=timedelta(hours=3), expectations="expectations/weather.json",',
    )
    (project.root / "features.py").write_text(text)
    project.features.apply()
    with pytest.raises(DataValidationError, match=r"(?s)feature view 'weather'.*temp") as caught:
        project.features.build_training_set(entity_rows(60), "flight_delay", timestamp="sched_dep")
    assert "weather" in caught.value.report
    assert not list((project.root / ".prodml" / "datasets").glob("*.parquet"))
    relaxed = Project.open(project.root, environ={"PRODML__FEATURES__ON_VIOLATION": "warn"})
    try:
        ts = relaxed.features.build_training_set(
            entity_rows(60), "flight_delay", timestamp="sched_dep"
        )
        assert ts.num_rows == 60
    finally:
        relaxed.close()
