"""Every error of the point-in-time join names the view, the column and what was expected."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from prodml.core.errors import DefinitionError, SchemaError, SourceError, TimestampError
from prodml.features._pit import JoinView, point_in_time_join

T0 = datetime(2024, 1, 1)
VIEW = JoinView(
    name="orders",
    relation="feature_rows",
    join_keys=(("customer", "customer_id"),),
    event_time="ts",
    created_time="created",
    ttl=timedelta(days=1),
    features=(("amount", "orders__amount"),),
)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.register(
        "feature_rows",
        pa.table(
            {
                "customer_id": [1, 2],
                "ts": pa.array([T0, T0], pa.timestamp("us")),
                "created": pa.array([T0, T0], pa.timestamp("us")),
                "amount": [1.5, 2.5],
                "day": pa.array([T0.date(), T0.date()], pa.date32()),
                "ts_aware": pa.array([T0, T0], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    try:
        yield connection
    finally:
        connection.close()


def entities(**columns: pa.Array) -> pa.Table:
    base: dict[str, pa.Array] = {
        "customer": pa.array([1, 2, 3]),
        "at": pa.array([T0, T0, T0], pa.timestamp("us")),
    }
    base.update(columns)
    return pa.table(base)


@pytest.mark.parametrize(
    ("change", "column", "role"),
    [
        ({"join_keys": (("customer", "cust"),)}, "cust", "join key"),
        ({"event_time": "event_ts"}, "event_ts", "event_time"),
        ({"created_time": "created_at"}, "created_at", "created_time"),
        ({"features": (("amt", "o__amt"),)}, "amt", "feature"),
    ],
)
def test_missing_feature_column_names_view_column_and_available(
    con: duckdb.DuckDBPyConnection, change: dict[str, object], column: str, role: str
) -> None:
    view = replace(VIEW, **change)  # type: ignore[arg-type]
    with pytest.raises(SchemaError) as info:
        point_in_time_join(con, entities(), "at", [view])
    message = str(info.value)
    assert "'orders'" in message
    assert f"{role} column {column!r}" in message
    assert "customer_id, ts, created, amount" in message


def test_missing_entity_columns(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(SchemaError, match=r"'orders'.*timestamp column 'when'.*customer, at"):
        point_in_time_join(con, entities(), "when", [VIEW])
    rows = entities().drop_columns(["customer"])
    with pytest.raises(
        SchemaError, match=r"'orders'.*join key column 'customer'.*available columns: at"
    ):
        point_in_time_join(con, rows, "at", [VIEW])
    with pytest.raises(SchemaError, match="timestamp column 'when'"):
        point_in_time_join(con, entities(), "when", [])


@pytest.mark.parametrize(("column", "kind"), [("amount", "double"), ("day", "date32")])
def test_non_timestamp_event_time(con: duckdb.DuckDBPyConnection, column: str, kind: str) -> None:
    view = replace(VIEW, event_time=column)
    with pytest.raises(
        SchemaError, match=rf"'orders'.*column {column!r} has type {kind}.*expected a timestamp"
    ):
        point_in_time_join(con, entities(), "at", [view])


def test_non_timestamp_created_time(con: duckdb.DuckDBPyConnection) -> None:
    view = replace(VIEW, created_time="amount")
    with pytest.raises(
        SchemaError, match=r"'orders'.*'amount' has type double.*expected a timestamp"
    ):
        point_in_time_join(con, entities(), "at", [view])


def test_non_timestamp_entity_timestamp(con: duckdb.DuckDBPyConnection) -> None:
    rows = entities(at=pa.array(["2024-01-01"] * 3))
    with pytest.raises(
        SchemaError, match=r"timestamp column 'at' has type string.*expected a timestamp"
    ):
        point_in_time_join(con, rows, "at", [VIEW])


def test_aware_entity_naive_feature(con: duckdb.DuckDBPyConnection) -> None:
    rows = entities(at=pa.array([T0] * 3, pa.timestamp("us", tz="UTC")))
    with pytest.raises(TimestampError) as info:
        point_in_time_join(con, rows, "at", [VIEW])
    message = str(info.value)
    assert "view 'orders'" in message
    assert "entity rows column 'at' is timezone-aware" in message
    assert "the view's column 'ts' is timezone-naive" in message
    assert "make both timezone-naive or both timezone-aware" in message


def test_naive_entity_aware_feature(con: duckdb.DuckDBPyConnection) -> None:
    view = replace(VIEW, event_time="ts_aware", created_time=None)
    with pytest.raises(
        TimestampError, match=r"'orders'.*'at' is timezone-naive.*'ts_aware' is timezone-aware"
    ):
        point_in_time_join(con, entities(), "at", [view])


def test_mixed_created_time(con: duckdb.DuckDBPyConnection) -> None:
    view = replace(VIEW, event_time="ts_aware", created_time="created")
    rows = entities(at=pa.array([T0] * 3, pa.timestamp("ns", tz="Europe/Paris")))
    with pytest.raises(TimestampError, match=r"'orders'.*column 'created' is timezone-naive"):
        point_in_time_join(con, rows, "at", [view])


def test_null_entity_timestamps_are_counted(con: duckdb.DuckDBPyConnection) -> None:
    rows = entities(at=pa.array([T0, None, None], pa.timestamp("us")))
    with pytest.raises(TimestampError, match=r"'at' has 2 null value\(s\) out of 3"):
        point_in_time_join(con, rows, "at", [VIEW])


def test_join_key_kinds_must_match(con: duckdb.DuckDBPyConnection) -> None:
    rows = entities(customer=pa.array(["1", "2", "3"]))
    with pytest.raises(
        SchemaError, match=r"'orders'.*'customer_id' has type int64.*'customer' has type string"
    ):
        point_in_time_join(con, rows, "at", [VIEW])


def test_unreadable_relation_is_a_source_error(con: duckdb.DuckDBPyConnection) -> None:
    view = replace(VIEW, relation="SELECT * FROM read_parquet('/nonexistent/x.parquet')")
    with pytest.raises(SourceError, match=r"view 'orders': relation could not be read"):
        point_in_time_join(con, entities(), "at", [view])


def test_definition_errors(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(
        DefinitionError, match=r"'orders__amount' is also produced by view 'orders'"
    ):
        point_in_time_join(con, entities(), "at", [VIEW, replace(VIEW, name="again")])
    with pytest.raises(DefinitionError, match=r"ttl is -1 day.*expected a duration >= 0"):
        point_in_time_join(con, entities(), "at", [replace(VIEW, ttl=timedelta(days=-1))])
    with pytest.raises(DefinitionError, match="join_keys is empty"):
        point_in_time_join(con, entities(), "at", [replace(VIEW, join_keys=())])


def test_timestamps_out_of_nanosecond_range(con: duckdb.DuckDBPyConnection) -> None:
    rows = entities(at=pa.array([T0] * 3, pa.timestamp("ns")))
    con.register(
        "far",
        pa.table({"customer_id": [1], "ts": pa.array([datetime(3000, 1, 1)]), "amount": [1.0]}),
    )
    view = replace(VIEW, relation="far", created_time=None)
    with pytest.raises(TimestampError, match=r"'orders'.*column 'ts'.*between 1677 and 2262"):
        point_in_time_join(con, rows, "at", [view])
