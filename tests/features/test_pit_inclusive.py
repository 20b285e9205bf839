"""The point-in-time bound of a view: ``inclusive=True`` (``event_time <= t``, the default)
or ``inclusive=False`` (strictly before ``t``), in definitions, joins and materialization."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurekit import FEATURES_PY, T0, make_project
from prodml.core import DefinitionError
from prodml.features import Entity, FeatureView, Field, ParquetSource
from prodml.features._pit import JoinView, point_in_time_join


def _view(**overrides: object) -> FeatureView:
    fields: dict[str, object] = {
        "entities": [Entity("user", join_keys=["user_id"])],
        "source": ParquetSource("u.parquet"),
        "event_time": "ts",
        "features": [Field("late_rate", "float64")],
    }
    fields.update(overrides)
    return FeatureView("users", **fields)  # type: ignore[arg-type]


def test_default_keeps_the_spec_and_version_of_existing_views() -> None:
    default, explicit, strict = _view(), _view(inclusive=True), _view(inclusive=False)
    assert default.inclusive is True
    assert "inclusive" not in default.spec()
    assert explicit.spec() == default.spec()
    assert explicit.version == default.version
    assert strict.spec() == {**default.spec(), "inclusive": False}
    assert strict.version != default.version


def test_inclusive_must_be_a_bool() -> None:
    with pytest.raises(DefinitionError, match=r"feature view 'users': inclusive must be True"):
        _view(inclusive="no")


def _join(con: duckdb.DuckDBPyConnection, table: pa.Table, rows: pa.Table, **kw: object) -> list:
    con.register("f", table)
    fields: dict[str, object] = {
        "name": "v",
        "relation": "f",
        "join_keys": (("k", "k"),),
        "event_time": "ts",
        "created_time": None,
        "ttl": None,
        "features": (("x", "x"),),
    }
    fields.update(kw)
    view = JoinView(**fields)  # type: ignore[arg-type]
    return point_in_time_join(con, rows, "t", [view])["x"].to_pylist()


def test_strict_bound_excludes_ties_at_exactly_t_to_the_nanosecond(
    con: duckdb.DuckDBPyConnection,
) -> None:
    ns = 1_704_067_200 * 10**9
    table = pa.table(
        {"k": [1, 1], "ts": pa.array([ns - 1, ns], pa.timestamp("ns")), "x": [1.0, 2.0]}
    )
    rows = pa.table({"k": [1, 1, 1], "t": pa.array([ns - 1, ns, ns + 1], pa.timestamp("ns"))})
    assert _join(con, table, rows) == [1.0, 2.0, 2.0]
    assert _join(con, table, rows, inclusive=False) == [None, 1.0, 2.0]


def test_strict_bound_keeps_the_ttl_edge_and_guards_created_time(
    con: duckdb.DuckDBPyConnection,
) -> None:
    t = T0
    hour = timedelta(hours=1)
    table = pa.table(
        {
            "k": [1, 1],
            "ts": pa.array([t - 2 * hour, t - hour], pa.timestamp("us", tz="UTC")),
            # the later row was written (created) exactly at t
            "ct": pa.array([t - 2 * hour, t], pa.timestamp("us", tz="UTC")),
            "x": [1.0, 2.0],
        }
    )
    rows = pa.table({"k": [1], "t": pa.array([t], pa.timestamp("us", tz="UTC"))})
    assert _join(con, table, rows, created_time="ct") == [2.0]
    assert _join(con, table, rows, created_time="ct", inclusive=False) == [1.0]
    # the TTL's lower edge stays inclusive: a row exactly `ttl` old is still valid
    two_hours = {"created_time": "ct", "ttl": 2 * hour}
    assert _join(con, table, rows, inclusive=False, **two_hours) == [1.0]
    assert _join(con, table, rows, inclusive=False, created_time="ct", ttl=hour) == [None]
    # a TTL of zero admits only rows at exactly t, which the strict bound excludes
    assert _join(con, table, rows, inclusive=False, ttl=timedelta(0)) == [None]


HOUR = timedelta(hours=1)
STRICT_FEATURES_PY = FEATURES_PY.replace(
    'created_time="created", ttl=timedelta(hours=3),',
    'created_time="created", ttl=timedelta(hours=3), inclusive=False,',
)


@pytest.mark.parametrize("inclusive", [True, False])
def test_online_matches_offline_after_materialize_at_a_row_s_own_time(
    tmp_path: Path, inclusive: bool
) -> None:
    project = make_project(tmp_path / "p")
    try:
        if not inclusive:
            (project.root / "features.py").write_text(STRICT_FEATURES_PY)
            project.features.reload()
        project.features.apply()
        assert project.features.repo.view("weather").inclusive is inclusive
        # weather rows are created at HH:30; `end` is exactly one row's created time
        end = T0 + timedelta(days=2, hours=5, minutes=30)
        project.features.materialize(end=end, views=["weather"])
        entities = {"origin": ["EWR", "JFK"], "tailnum": ["N1", "N2"]}
        request = {"sched_dep_time": [517, 1230]}
        online = project.features.get_online("flight_delay", entities, request, now=end)
        rows = pa.table(
            {
                "origin": ["EWR", "JFK"],
                "tailnum": ["N1", "N2"],
                "sched_dep": pa.array([end] * 2, pa.timestamp("us", tz="UTC")),
                **request,
            }
        )
        offline = project.features.build_training_set(rows, "flight_delay", timestamp="sched_dep")
        table = offline.to_arrow()
        assert online.values["temp"] == table["temp"].to_pylist()
        weather = project.features.repo.view("weather")
        source = pq.read_table(project.root / "data" / "weather.parquet")
        at_end = source.filter(pc.equal(source["created"], pa.scalar(end)))
        # inclusive: the row created at `end` is visible at `end`; strict: the hour before
        expected_hour = end - timedelta(minutes=30) - (timedelta(0) if inclusive else 1 * HOUR)
        picked = source.filter(pc.equal(source["time_hour"], pa.scalar(expected_hour)))
        by_origin = dict(zip(picked["origin"].to_pylist(), picked["temp"].to_pylist(), strict=True))
        assert at_end.num_rows == 3
        assert table["temp"].to_pylist() == [by_origin["EWR"], by_origin["JFK"]]
        # a later run picks up the row created exactly at the previous end
        later = end + timedelta(minutes=1)
        project.features.materialize(end=later, views=["weather"])
        after = project.features.get_online("flight_delay", entities, request, now=later)
        latest = dict(zip(at_end["origin"].to_pylist(), at_end["temp"].to_pylist(), strict=True))
        assert after.values["temp"] == [latest["EWR"], latest["JFK"]]
        assert weather.spec().get("inclusive", True) is inclusive
    finally:
        project.close()
