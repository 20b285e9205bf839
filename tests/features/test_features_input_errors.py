"""Bad inputs to the feature layer are refused by name: unreadable entity-row files,
on-demand functions that read undeclared inputs or fail, empty entity rows and empty
sources, views that match no entity row, unknown dtypes and mixed naive/aware times."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurekit import FEATURES_PY, T0, entity_rows
from prodml import Project
from prodml.core import (
    DataValidationError,
    DefinitionError,
    SourceError,
    TimestampError,
)
from prodml.features import Entity, FeatureView, Field, OnDemandFeature, ParquetSource


def _no_snapshot_written(project: Project) -> None:
    datasets = project.root / project.config.features.datasets_path
    assert not datasets.exists() or not any(datasets.iterdir())


# -- entity rows read from a file (item 8) -----------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty \(0 bytes\)"),
        (b"flight_id,origin\n1,EWR\n", "is not a Parquet file"),
        (b"PAR1" + b"\0" * 40, "is not a Parquet file"),
    ],
)
def test_unreadable_entity_rows_file_names_the_file(
    project: Project, tmp_path: Path, content: bytes, message: str
) -> None:
    project.features.apply()
    path = tmp_path / "rows.parquet"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as info:
        project.features.build_training_set(path, "flight_delay", timestamp="sched_dep")
    assert str(path) in str(info.value)
    _no_snapshot_written(project)


def test_missing_and_empty_csv_entity_rows_files(project: Project, tmp_path: Path) -> None:
    project.features.apply()
    missing = tmp_path / "nope.parquet"
    with pytest.raises(SourceError, match="does not exist") as info:
        project.features.build_training_set(missing, "flight_delay", timestamp="sched_dep")
    assert str(missing) in str(info.value)
    empty_csv = tmp_path / "rows.csv"
    empty_csv.write_text("")
    with pytest.raises(SourceError, match=r"rows\.csv.*is empty"):
        project.features.build_training_set(empty_csv, "flight_delay", timestamp="sched_dep")


def test_entity_rows_from_a_parquet_path(project: Project, tmp_path: Path) -> None:
    project.features.apply()
    path = tmp_path / "rows.parquet"
    pq.write_table(entity_rows(12), path)
    result = project.features.build_training_set(str(path), "flight_delay", timestamp="sched_dep")
    assert result.num_rows == 12


# -- empty inputs (item 10) --------------------------------------------------------------
def test_empty_entity_rows_are_refused(project: Project, tmp_path: Path) -> None:
    project.features.apply()
    with pytest.raises(DataValidationError, match=r"entity rows .*'flight_delay'.* no rows"):
        project.features.build_training_set(
            entity_rows(5).slice(0, 0), "flight_delay", timestamp="sched_dep"
        )
    path = tmp_path / "zero.parquet"
    pq.write_table(entity_rows(5).slice(0, 0), path)
    with pytest.raises(DataValidationError, match="no rows") as info:
        project.features.build_training_set(path, "flight_delay", timestamp="sched_dep")
    assert str(path) in str(info.value)
    _no_snapshot_written(project)


def test_empty_source_is_an_error_naming_the_view_and_its_source(project: Project) -> None:
    project.features.apply()
    path = project.root / "data" / "weather.parquet"
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    with pytest.raises(
        SourceError, match=r"feature view 'weather'.*data/weather\.parquet.*no rows"
    ):
        project.features.build_training_set(entity_rows(10), "flight_delay", timestamp="sched_dep")
    _no_snapshot_written(project)
    with pytest.raises(
        SourceError, match=r"feature view 'weather'.*data/weather\.parquet.*no rows"
    ):
        project.features.materialize(end=T0 + timedelta(days=3), views=["weather"])
    # a view with rows still materializes
    (planes,) = project.features.materialize(end=T0 + timedelta(days=3), views=["planes"])
    assert planes.rows_written == 3


#: The coverage of a view that no entity row of ``_unmatched_rows(20)`` matched.
UNMATCHED = {"rows": 20, "matched": 0, "picked": 0, "exact_time": 0, "exact_time_share": 0.0}


def _unmatched_rows(n: int = 20) -> pa.Table:
    """Entity rows whose origin no weather row has: the weather view matches none."""
    rows = entity_rows(n)
    return rows.set_column(1, "origin", pa.array(["XXX"] * n))


def test_a_view_matching_no_entity_row_is_reported_with_counts(project: Project) -> None:
    project.features.apply()
    result = project.features.build_training_set(
        _unmatched_rows(20), "flight_delay", timestamp="sched_dep"
    )
    assert result.coverage["weather"].rows == 20
    assert result.coverage["weather"].matched == 0
    assert (
        result.coverage["planes"].matched
        == pc.sum(pc.is_in(result.table["tailnum"], pa.array(["N1", "N2", "N3"]))).as_py()
    )
    (warning,) = result.warnings
    assert "feature view 'weather'" in warning
    assert "0 of 20" in warning
    summary = result.summary()
    assert summary["coverage"]["weather"] == UNMATCHED
    assert summary["warnings"] == [warning]
    # a normal build has no warning
    assert (
        project.features.build_training_set(
            entity_rows(20), "flight_delay", timestamp="sched_dep"
        ).warnings
        == ()
    )


def test_unmatched_view_can_be_an_error(project: Project) -> None:
    project.features.apply()
    with pytest.raises(DataValidationError, match=r"feature view 'weather'.*0 of 20") as info:
        project.features.build_training_set(
            _unmatched_rows(20), "flight_delay", timestamp="sched_dep", on_unmatched_view="error"
        )
    assert info.value.report == {"weather": UNMATCHED}
    _no_snapshot_written(project)
    config = project.root / "prodml.toml"
    text = config.read_text().replace("[features]\n", '[features]\non_unmatched_view = "error"\n')
    config.write_text(text)
    project.close()
    with Project.open(project.root) as reopened, pytest.raises(DataValidationError):
        reopened.features.build_training_set(
            _unmatched_rows(20), "flight_delay", timestamp="sched_dep"
        )


# -- on-demand functions (item 8) ----------------------------------------------------------
def _with_dep_hour(project: Project, body: str) -> None:
    text = FEATURES_PY.replace('lambda c: c["sched_dep_time"] // 100', body)
    assert text != FEATURES_PY
    (project.root / "features.py").write_text(text)
    project.features.apply()


def test_on_demand_reading_an_undeclared_input_is_named(project: Project) -> None:
    _with_dep_hour(project, 'lambda c: c["sched_dep_time"] // 100 + c["temp"] * 0')
    with pytest.raises(DefinitionError) as info:
        project.features.build_training_set(entity_rows(5), "flight_delay", timestamp="sched_dep")
    message = str(info.value)
    assert "on-demand feature 'dep_hour'" in message
    assert "'temp'" in message
    assert "['sched_dep_time']" in message
    project.features.materialize(end=T0 + timedelta(days=2))
    with pytest.raises(DefinitionError, match=r"'dep_hour'.*'temp'.*\['sched_dep_time'\]"):
        project.features.get_online(
            "flight_delay", {"origin": ["EWR"], "tailnum": ["N1"]}, {"sched_dep_time": [900]}
        )


def test_on_demand_function_failure_names_the_feature(project: Project) -> None:
    _with_dep_hour(project, 'lambda c: c["sched_dep_time"].no_such_method()')
    with pytest.raises(
        DefinitionError, match=r"on-demand feature 'dep_hour'.*AttributeError"
    ) as info:
        project.features.build_training_set(entity_rows(5), "flight_delay", timestamp="sched_dep")
    assert isinstance(info.value.__cause__, AttributeError)


# -- messages that name their object (item 11) ---------------------------------------------
def test_unknown_dtype_names_the_view_and_the_field() -> None:
    origin = Entity("origin")
    with pytest.raises(DefinitionError) as info:
        FeatureView(
            "weather",
            entities=[origin],
            source=ParquetSource("w.parquet"),
            event_time="time_hour",
            features=[Field("temp", "float64"), Field("wind", "intt")],
        )
    message = str(info.value)
    assert "feature view 'weather'" in message
    assert "field 'wind'" in message
    assert "'intt'" in message
    assert "float64, int16, int32, int64" in message
    with pytest.raises(DefinitionError, match=r"on-demand feature 'hour'.*field 'hour'.*'intt'"):
        OnDemandFeature("hour", lambda c: c["x"], inputs=["x"], dtype="intt")


def test_timestamp_hint_names_the_api_argument_and_the_cli_flag(project: Project) -> None:
    project.features.apply()
    with pytest.raises(TimestampError, match=r"timestamp=.*--timestamp"):
        project.features.build_training_set(entity_rows(5), "flight_delay")


def test_naive_entity_rows_against_an_aware_view_say_how_to_fix(project: Project) -> None:
    project.features.apply()
    rows = entity_rows(5)
    naive = rows.set_column(3, "sched_dep", pc.cast(rows["sched_dep"], pa.timestamp("us")))
    with pytest.raises(TimestampError) as info:
        project.features.build_training_set(naive, "flight_delay", timestamp="sched_dep")
    message = str(info.value)
    assert "entity rows column 'sched_dep' is timezone-naive" in message
    assert "'weather'" in message
    assert "column 'time_hour' is timezone-aware" in message
    assert "make both timezone-naive or both timezone-aware" in message
