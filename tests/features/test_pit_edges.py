"""Targeted cases of the point-in-time join: precision, Parquet order, empty inputs, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodml.features import _pit as pit
from prodml.features._pit import JoinView, point_in_time_join

T0 = datetime(2024, 1, 1)


def view(relation: str, **overrides: object) -> JoinView:
    fields: dict[str, object] = {
        "name": "v",
        "relation": relation,
        "join_keys": (("k", "k"),),
        "event_time": "ts",
        "created_time": None,
        "ttl": None,
        "features": (("x", "x"),),
    }
    fields.update(overrides)
    return JoinView(**fields)  # type: ignore[arg-type]


def test_nanosecond_edges_are_exact(con: duckdb.DuckDBPyConnection) -> None:
    ns = 1_704_067_200 * 10**9
    con.register(
        "f",
        pa.table(
            {"k": [1, 1], "ts": pa.array([ns - 1000, ns + 1], pa.timestamp("ns")), "x": [1.0, 2.0]}
        ),
    )
    rows = pa.table(
        {"k": [1, 1, 1, 1], "t": pa.array([ns, ns + 1, ns + 999, ns + 1000], pa.timestamp("ns"))}
    )
    # ttl of 1 µs: at ns the row at ns-1000 sits exactly on the edge, at ns+1 it is 1001 ns old
    result = point_in_time_join(con, rows, "t", [view("f", ttl=timedelta(microseconds=1))])
    assert result["x"].to_pylist() == [1.0, 2.0, 2.0, 2.0]
    result = point_in_time_join(con, rows, "t", [view("f", ttl=timedelta(0))])
    assert result["x"].to_pylist() == [None, 2.0, None, None]


def test_aware_zones_compare_as_instants(con: duckdb.DuckDBPyConnection) -> None:
    utc_noon = datetime(2024, 1, 1, 12, tzinfo=UTC)
    con.register(
        "f",
        pa.table(
            {"k": [1], "ts": pa.array([utc_noon], pa.timestamp("us", tz="Asia/Tokyo")), "x": [1.0]}
        ),
    )
    instants = [utc_noon - timedelta(microseconds=1), utc_noon]
    rows = pa.table(
        {"k": [1, 1], "t": pa.array(instants, pa.timestamp("ms", tz="America/New_York"))}
    )
    result = point_in_time_join(con, rows, "t", [view("f")])
    assert result["x"].to_pylist() == [None, 1.0]


def test_full_ties_pick_last_row_of_parquet_files(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """Full ties across row groups and files resolve to the last row in file order,
    whatever the thread count."""
    n = 300_000
    for name, offset in (("a.parquet", 0), ("b.parquet", n)):
        table = pa.table(
            {
                "k": np.arange(n) % 3,
                "ts": pa.array(np.full(n, T0), pa.timestamp("us")),
                "x": np.arange(offset, offset + n, dtype=np.float64),
            }
        )
        pq.write_table(table, tmp_path / name, row_group_size=10_000)
    con.execute("SET threads = 4")
    relation = f"SELECT * FROM read_parquet('{tmp_path}/*.parquet')"
    rows = pa.table({"k": [0, 1, 2, 3], "t": pa.array([T0] * 4, pa.timestamp("us"))})
    for guard_view in (view(relation), view(relation, created_time="ts")):
        result = point_in_time_join(con, rows, "t", [guard_view])
        assert result["x"].to_pylist() == [2 * n - 3, 2 * n - 2, 2 * n - 1, None]


def test_empty_entity_rows_and_empty_relation_keep_types(con: duckdb.DuckDBPyConnection) -> None:
    con.register(
        "f",
        pa.table(
            {
                "k": pa.array([], pa.int64()),
                "ts": pa.array([], pa.timestamp("us")),
                "x": pa.array([], pa.string()),
            }
        ),
    )
    rows = pa.table({"k": [1, None], "t": pa.array([T0, T0], pa.timestamp("s"))})
    result = point_in_time_join(con, rows, "t", [view("f")])
    assert result.schema == pa.schema([("x", pa.string())])
    assert result["x"].to_pylist() == [None, None]
    empty = point_in_time_join(con, rows.slice(0, 0), "t", [view("f")])
    assert (empty.num_rows, empty.schema) == (0, result.schema)


def test_no_views_gives_rows_without_columns(con: duckdb.DuckDBPyConnection) -> None:
    rows = pa.table({"t": pa.array([T0] * 3, pa.timestamp("us"))})
    result = point_in_time_join(con, rows, "t", [])
    assert (result.num_rows, result.num_columns) == (3, 0)


def test_one_column_under_several_output_names(con: duckdb.DuckDBPyConnection) -> None:
    con.register("f", pa.table({"k": [1], "ts": pa.array([T0], pa.timestamp("us")), "x": [4.0]}))
    features = (("x", "first"), ("x", "second"), ("ts", "seen_at"), ("k", "key"))
    rows = pa.table({"k": [1], "t": pa.array([T0], pa.timestamp("us"))})
    result = point_in_time_join(con, rows, "t", [view("f", features=features)])
    assert result.to_pylist() == [{"first": 4.0, "second": 4.0, "seen_at": T0, "key": 1}]


def test_aware_feature_values_come_out_in_utc(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    stamp = datetime(2024, 1, 1, tzinfo=UTC)
    con.register("f", pa.table({"k": [1], "ts": pa.array([stamp], pa.timestamp("us", tz="UTC"))}))
    rows = pa.table({"k": [1], "t": pa.array([stamp], pa.timestamp("us", tz="UTC"))})
    result = point_in_time_join(con, rows, "t", [view("f", features=(("ts", "seen"),))])
    assert result.schema.field("seen").type == pa.timestamp("us", tz="UTC")
    assert result["seen"].to_pylist() == [stamp]


def test_settings_are_restored_and_nothing_stays_registered(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET TimeZone = 'Europe/Berlin'")
    con.execute("SET preserve_insertion_order = false")
    con.register("f", pa.table({"k": [1], "ts": pa.array([T0], pa.timestamp("us")), "x": [1.0]}))
    rows = pa.table({"k": [1], "t": pa.array([T0], pa.timestamp("us"))})
    point_in_time_join(con, rows, "t", [view("f", created_time="ts")])
    settings = con.sql(
        "SELECT current_setting('TimeZone'), current_setting('preserve_insertion_order')"
    ).fetchall()
    assert settings == [("Europe/Berlin", False)]
    leftovers = con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name LIKE '__prodml%'")
    assert leftovers.fetchall() == [(0,)]


def test_unbounded_ttl_and_dictionary_keys(con: duckdb.DuckDBPyConnection) -> None:
    keys = pa.array(["a", "b"]).dictionary_encode()
    con.register(
        "f", pa.table({"k": keys, "ts": pa.array([T0, T0], pa.timestamp("ns")), "x": [1.0, 2.0]})
    )
    rows = pa.table(
        {"k": pa.array(["b", "a"]), "t": pa.array([datetime(2200, 1, 1)] * 2, pa.timestamp("us"))}
    )
    result = point_in_time_join(con, rows, "t", [view("f", ttl=timedelta.max)])
    assert result["x"].to_pylist() == [2.0, 1.0]


@pytest.mark.parametrize("guard", [True, False])
def test_null_created_time_ranks_below_every_created_time(
    con: duckdb.DuckDBPyConnection, guard: bool
) -> None:
    created = pa.array([T0 - timedelta(hours=1), None], pa.timestamp("us"))
    con.register(
        "f",
        pa.table(
            {
                "k": [1, 1],
                "ts": pa.array([T0, T0], pa.timestamp("us")),
                "c": created,
                "x": [2.0, 1.0],
            }
        ),
    )
    rows = pa.table({"k": [1], "t": pa.array([T0], pa.timestamp("us"))})
    result = point_in_time_join(
        con, rows, "t", [view("f", created_time="c")], created_time_guard=guard
    )
    assert result["x"].to_pylist() == [2.0]


def test_parallel_gather_matches_sequential(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    con.register(
        "f",
        pa.table(
            {
                "k": [1, 2],
                "ts": pa.array([T0, T0], pa.timestamp("us")),
                "x": [1.0, 2.0],
                "y": ["a", None],
            }
        ),
    )
    rows = pa.table({"k": [2, 1, 3], "t": pa.array([T0] * 3, pa.timestamp("us"))})
    features = (("x", "x"), ("y", "y"))
    sequential = point_in_time_join(con, rows, "t", [view("f", features=features)])
    monkeypatch.setattr(pit, "_PARALLEL_GATHER_ROWS", 1)
    parallel = point_in_time_join(con, rows, "t", [view("f", features=features)])
    assert parallel.equals(sequential)
    assert parallel.to_pydict() == {"x": [2.0, 1.0, None], "y": [None, "a", None]}


def test_wide_integer_keys(con: duckdb.DuckDBPyConnection) -> None:
    keys = pa.array([2**40, 2**40 + 2**32, -(2**33)], pa.int64())
    con.register(
        "f",
        pa.table({"k": keys, "ts": pa.array([T0] * 3, pa.timestamp("us")), "x": [1.0, 2.0, 3.0]}),
    )
    rows = pa.table(
        {
            "k": pa.array([2**40 + 2**32, 2**40, -(2**33), 2**32]),
            "t": pa.array([T0] * 4, pa.timestamp("us")),
        }
    )
    result = point_in_time_join(con, rows, "t", [view("f")])
    assert result["x"].to_pylist() == [2.0, 1.0, 3.0, None]
