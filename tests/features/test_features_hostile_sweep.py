"""Hostile and degenerate inputs to the feature layer, through its public interface:
entity rows with repeated column names, online reads given a string or a single value
where a list is expected, columns of mixed types or request fields that shadow features,
sources that fail while materialized or hold rows the join ignores, and ``prodml
features`` options given twice, digit keys and an unwritable ``--output``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from featurekit import T0, entity_rows, planes_table, weather_table
from prodml import Project
from prodml.cli import app
from prodml.core import SchemaError, SourceError
from prodml.features import Entity, FeatureService, FeatureView, Field, SqlSource

END = T0 + timedelta(days=11)
NOW = T0 + timedelta(days=9, hours=23, minutes=50)
runner = CliRunner()


def _with_column(table: pa.Table, name: str) -> pa.Table:
    """``table`` with a second column called ``name`` (a copy of the first)."""
    return pa.Table.from_arrays(
        [*table.columns, table.column(name)], names=[*table.column_names, name]
    )


# -- entity rows with a column name given twice --------------------------------------------
@pytest.mark.parametrize("column", ["origin", "sched_dep", "late"])
def test_entity_rows_with_a_repeated_column_name_are_refused_by_name(
    project: Project, column: str
) -> None:
    project.features.apply()
    rows = _with_column(entity_rows(10), column)
    with pytest.raises(SchemaError, match=rf"\['{column}'\] appear more than once"):
        project.features.build_training_set(rows, "flight_delay", timestamp="sched_dep")


def test_a_dataframe_with_a_repeated_column_name_is_refused_by_name(project: Project) -> None:
    project.features.apply()
    frame = entity_rows(10).to_pandas()
    frame = pd.concat([frame, frame[["origin"]]], axis=1)
    with pytest.raises(SchemaError, match=r"\['origin'\] appear more than once"):
        project.features.build_training_set(frame, "flight_delay", timestamp="sched_dep")


def test_a_csv_file_with_a_repeated_column_name_is_refused_by_name(
    project: Project, tmp_path: Path
) -> None:
    project.features.apply()
    path = tmp_path / "rows.csv"
    path.write_text(
        "origin,origin,tailnum,sched_dep,sched_dep_time\nJFK,EWR,N1,2013-01-02T00:00:00Z,830\n"
    )
    with pytest.raises(SchemaError, match=r"\['origin'\] appear more than once"):
        project.features.build_training_set(path, "flight_delay", timestamp="sched_dep")


# -- online reads: the shape of the entities and request data -------------------------------
@pytest.fixture
def online(project: Project) -> Project:
    project.features.apply()
    project.features.materialize(end=END)
    return project


def _get(project: Project, entities: Any, request: Any = None) -> dict[str, list[Any]]:
    return project.features.get_online("flight_delay", entities, request, now=NOW).values


def test_get_online_reads_a_string_as_one_value_not_one_entity_per_character(
    online: Project,
) -> None:
    # "JFK" and "N12" both have three characters: read as lists, three unknown entities
    with pytest.raises(SchemaError, match=r"column 'origin' is of type str, not a list"):
        _get(online, {"origin": "JFK", "tailnum": "N12"}, {"sched_dep_time": [1, 2, 3]})
    with pytest.raises(SchemaError, match=r"column 'sched_dep_time' is of type str, not a list"):
        _get(online, {"origin": ["JFK"], "tailnum": ["N1"]}, {"sched_dep_time": "830"})


@pytest.mark.parametrize(
    "entities",
    [
        {"origin": ["JFK"], "tailnum": 5},
        {"origin": ["JFK"], "tailnum": {"N1"}},
        None,
        "origin",
        5,
        [1, 2],
        pd.DataFrame({"origin": ["JFK"], "tailnum": ["N1"]}),
    ],
    ids=["int column", "set column", "None", "str", "int", "rows of ints", "DataFrame"],
)
def test_get_online_refuses_entities_of_the_wrong_shape(online: Project, entities: Any) -> None:
    with pytest.raises(SchemaError, match=r"entities: .*expected"):
        _get(online, entities, {"sched_dep_time": [830]})


def test_get_online_refuses_a_column_of_mixed_types_by_name(online: Project) -> None:
    with pytest.raises(SchemaError, match=r"field 'origin' holds values of types \['int', 'str'\]"):
        _get(online, {"origin": ["JFK", 1], "tailnum": ["N1", "N2"]}, {"sched_dep_time": [1, 2]})
    with pytest.raises(SchemaError, match=r"field 'sched_dep_time' holds values of types"):
        _get(online, {"origin": ["JFK"] * 2, "tailnum": ["N1"] * 2}, {"sched_dep_time": [1, "x"]})


def test_get_online_refuses_request_fields_that_shadow_features_or_keys(online: Project) -> None:
    keys = {"origin": ["JFK"], "tailnum": ["N1"]}
    # the request's temp would be ignored: warm reads the stored temp
    with pytest.raises(SchemaError, match=r"request field\(s\) \['temp'\] have the names of"):
        _get(online, keys, {"sched_dep_time": [830], "temp": [99.0]})
    # on-demand features would read origin EWR beside JFK's stored features
    with pytest.raises(SchemaError, match=r"request field 'origin' is also an entity key"):
        _get(online, keys, {"sched_dep_time": [830], "origin": ["EWR"]})
    same = _get(online, keys, {"sched_dep_time": [830], "origin": ["JFK"]})
    assert same == _get(online, keys, {"sched_dep_time": [830]})


# -- materialization: failing sources and rows the join ignores -------------------------------
def test_materialize_names_a_parquet_source_damaged_inside(project: Project) -> None:
    project.features.apply()
    path = project.root / "data" / "weather.parquet"
    data = bytearray(path.read_bytes())
    for i in range(8, len(data) // 2):  # the footer (schema) stays readable, pages do not
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"feature view 'weather': reading its source"):
        project.features.materialize(end=END, views=["weather"])
    assert project.features.watermarks()["weather"] is None


def test_materialize_names_a_sql_source_that_raises_while_read(project: Project) -> None:
    query = (
        "SELECT origin, time_hour, CASE WHEN time_hour > TIMESTAMPTZ '2013-01-05' "
        "THEN error('boom') ELSE temp END AS temp FROM read_parquet('data/weather.parquet')"
    )
    view = FeatureView(
        "sql_weather",
        entities=[Entity("origin")],
        source=SqlSource(query),
        event_time="time_hour",
        features=[Field("temp", "float64")],
    )
    project.features.apply([view, FeatureService("sql_service", features=[view])])
    with pytest.raises(SourceError, match=r"feature view 'sql_weather': reading its source.*boom"):
        project.features.materialize(end=END, views=["sql_weather"])
    assert project.features.watermarks()["sql_weather"] is None


def test_materialize_takes_the_rows_the_join_takes_with_null_keys_times_and_created(
    project: Project,
) -> None:
    """Null join keys and null event times are ignored by the join; a null created time
    means "known at its event time" (and oldest among ties). Materialization loads the
    same rows, so the online store serves what the join picks at the watermark."""
    table = weather_table()
    origins, times = table.column("origin").to_pylist(), table.column("time_hour").to_pylist()
    created = table.column("created").to_pylist()
    last = table.num_rows - 3  # the last hour's first row (EWR)
    origins[5] = None
    times[last - 3] = None  # EWR one hour before the last
    created[last] = None  # EWR's last row: known at its event time
    stamp = pa.timestamp("us", tz="UTC")
    table = table.set_column(0, "origin", pa.array(origins, pa.string()))
    table = table.set_column(1, "time_hour", pa.array(times, stamp))
    table = table.set_column(2, "created", pa.array(created, stamp))
    pq.write_table(table, project.root / "data" / "weather.parquet")
    project.features.apply()
    at = T0 + timedelta(days=10)
    (result,) = project.features.materialize(end=at, views=["weather"])
    assert result.rows_read == table.num_rows - 2  # not the null key, not the null time
    rows = pa.table(
        {
            "origin": ["EWR", "JFK", "LGA"],
            "tailnum": ["N1"] * 3,
            "at": pa.array([at] * 3, stamp),
            "sched_dep_time": [830] * 3,
        }
    )
    offline = project.features.build_training_set(rows, "flight_delay", timestamp="at").table
    online = project.features.get_online(
        "flight_delay", {"origin": rows["origin"].to_pylist(), "tailnum": ["N1"] * 3},
        {"sched_dep_time": [830] * 3}, now=at,
    )  # fmt: skip
    assert online.values["temp"] == offline.column("temp").to_pylist()
    assert None not in online.values["temp"]


# -- the command line -----------------------------------------------------------------------
def _cli(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def cli_project(project: Project) -> Path:
    planes = planes_table()
    planes = planes.set_column(0, "tailnum", pa.array(["007", "42", "N3"]))
    pq.write_table(planes, project.root / "data" / "planes.parquet")
    project.features.apply()
    project.features.materialize(end=END)
    project.close()
    return project.root


def test_cli_get_refuses_an_entity_key_given_twice(cli_project: Path) -> None:
    code, out = _cli(
        "features", "get", "flight_delay", "-e", "origin=JFK", "-e", "origin=EWR",
        "-e", "tailnum=N3", "-r", "sched_dep_time=830", "-p", str(cli_project),
    )  # fmt: skip
    assert code == 7, out
    assert out["error"] == "--entity 'origin' is given twice; expected each key once"


def test_cli_get_keeps_digit_keys_whose_text_matters_as_strings(cli_project: Path) -> None:
    p = ["-r", "sched_dep_time=830", "--at", "2013-01-10T23:50", "-p", str(cli_project)]
    code, out = _cli("features", "get", "flight_delay", "-e", "origin=JFK", "-e", "tailnum=007", *p)
    assert code == 0, out
    assert out["values"]["year"] == [2001]  # "007", not the integer 7
    code, out = _cli(
        "features", "get", "flight_delay", "-e", "origin=JFK", "-e", 'tailnum="42"', *p
    )
    assert code == 0, out
    assert out["values"]["year"] == [1998]


def test_cli_build_training_set_refuses_an_unwritable_output_path(
    cli_project: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.parquet"
    pq.write_table(entity_rows(10), rows)
    result = runner.invoke(
        app,
        ["features", "build-training-set", str(rows), "-s", "flight_delay", "--timestamp",
         "sched_dep", "-o", str(tmp_path / "missing" / "out.parquet"), "-p", str(cli_project)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    words = " ".join(result.output.replace("│", " ").split())
    assert "'--output'" in words, words
    assert "does not exist" in words, words
    assert result.exception is None or isinstance(result.exception, SystemExit)
    target = tmp_path / "a_directory.parquet"
    target.mkdir()
    code, out = _cli(
        "features", "build-training-set", str(rows), "-s", "flight_delay", "--timestamp",
        "sched_dep", "-o", str(target), "-p", str(cli_project),
    )  # fmt: skip
    assert code == 12, out
    assert "the training set is stored as snapshot" in out["error"]
