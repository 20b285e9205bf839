"""Entity-key encoding and write-batch preparation, independent of any backend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodml.core import SchemaError, TimestampError
from prodml.features.online import encode_entity_key, encode_entity_keys
from prodml.features.online._batch import prepare_batch

T0 = datetime(2013, 1, 1, tzinfo=UTC)
T0_US = 1_356_998_400_000_000


def test_online_key_is_deterministic_and_type_aware() -> None:
    keys = [(1,), ("1",), (1.0,), (True,), ("1", 1), (1, "1"), (None,)]
    encoded = [encode_entity_key(k) for k in keys]
    assert len(set(encoded)) == len(keys)
    assert encoded == [encode_entity_key(k) for k in keys]
    assert encode_entity_key(("a,b", "c")) != encode_entity_key(("a", "b,c"))
    assert encode_entity_key(('a"', "b")) != encode_entity_key(("a", '"b'))


def test_online_key_ignores_numeric_widths() -> None:
    assert encode_entity_key((np.int32(7),)) == encode_entity_key((7,)) == "[7]"
    assert encode_entity_key((np.float32(0.5),)) == encode_entity_key((0.5,))
    assert encode_entity_key((np.str_("JFK"),)) == encode_entity_key(("JFK",))


def test_online_key_times_are_utc() -> None:
    naive = datetime(2013, 1, 1, 5)
    assert encode_entity_key((naive,)) == encode_entity_key((naive.replace(tzinfo=UTC),))
    assert encode_entity_key((date(2013, 1, 1),)) == '["2013-01-01"]'


def test_online_key_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match="expected a tuple"):
        encode_entity_key(1)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"value types \(bytes\) are not supported"):
        encode_entity_key((b"x",))


@given(
    st.lists(
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_online_table_keys_equal_scalar_keys(rows: list[tuple[int, str, bool]]) -> None:
    t = pa.table(
        {
            "i": pa.array([r[0] for r in rows], pa.int64()),
            "s": [r[1] for r in rows],
            "b": [r[2] for r in rows],
        }
    )
    assert encode_entity_keys(t, ["i", "s", "b"]) == [encode_entity_key(r) for r in rows]
    assert encode_entity_keys(t, ["s"]) == [encode_entity_key((r[1],)) for r in rows]


def test_online_table_keys_normalise_column_types() -> None:
    t = pa.table(
        {
            "cat": pa.array(["a", "b"]).dictionary_encode(),
            "small": pa.array([1, 2], pa.int8()),
            "ts": pa.array([T0, T0], pa.timestamp("ns", tz="America/New_York")),
        }
    )
    assert encode_entity_keys(t, ["cat", "small", "ts"]) == [
        encode_entity_key(("a", 1, T0)),
        encode_entity_key(("b", 2, T0)),
    ]


def test_online_table_keys_reject_missing_null_and_empty() -> None:
    t = pa.table({"id": [1, None]})
    with pytest.raises(SchemaError, match=r"entity key column 'nope' is missing.*\['id'\]"):
        encode_entity_keys(t, ["nope"])
    with pytest.raises(SchemaError, match="'id' has 1 null values"):
        encode_entity_keys(t, ["id"])
    with pytest.raises(SchemaError, match="at least one column"):
        encode_entity_keys(t, [])
    with pytest.raises(SchemaError, match="not supported"):
        encode_entity_keys(pa.table({"id": [b"x"]}), ["id"])


def _prepare(t: pa.Table | pa.RecordBatch, created: str | None = None) -> object:
    return prepare_batch(
        t,
        key_columns=["id"],
        event_time_column="ts",
        feature_columns=["x"],
        created_time_column=created,
    )


def test_online_batch_converts_any_timestamp_unit_and_zone_to_utc_micros() -> None:
    for kind in (
        pa.timestamp("s", tz="UTC"),
        pa.timestamp("ms"),
        pa.timestamp("ns", tz="Asia/Tokyo"),
    ):
        t = pa.table({"id": [1], "ts": pa.array([T0], kind), "x": [1.0]})
        batch = prepare_batch(t, key_columns=["id"], event_time_column="ts", feature_columns=["x"])
        assert batch.event_us.tolist() == [T0_US], kind
        assert batch.created_us is None


def test_online_batch_keeps_newest_row_per_entity() -> None:
    stamps = [T0 + timedelta(seconds=s) for s in (5, 9, 9, 1, 3)]
    created = [T0 + timedelta(seconds=s) for s in (0, 2, 1, 0, 0)]
    t = pa.record_batch(
        {
            "id": ["a", "b", "b", "a", "c"],
            "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "cr": pa.array(created, pa.timestamp("us", tz="UTC")),
            "x": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    batch = prepare_batch(
        t,
        key_columns=["id"],
        event_time_column="ts",
        feature_columns=["x"],
        created_time_column="cr",
    )
    assert batch.entity_keys == ['["a"]', '["b"]', '["c"]']
    assert batch.payloads == [b'{"x":1.0}', b'{"x":2.0}', b'{"x":5.0}']
    assert batch.created_us is not None
    assert batch.created_us.tolist() == [T0_US, T0_US + 2_000_000, T0_US]
    assert len(batch) == 3


def test_online_batch_errors_name_the_column() -> None:
    t = pa.table({"id": [1], "ts": pa.array([T0], pa.timestamp("us")), "x": [1.0]})
    with pytest.raises(TimestampError, match="created-time column 'missing' is missing"):
        prepare_batch(
            t,
            key_columns=["id"],
            event_time_column="ts",
            feature_columns=["x"],
            created_time_column="missing",
        )
    with pytest.raises(SchemaError, match="expected unique names"):
        prepare_batch(t, key_columns=["id"], event_time_column="ts", feature_columns=["x", "x"])
    dec = t.append_column("d", pa.array([1], pa.decimal128(5, 2)))
    with pytest.raises(SchemaError, match=r"feature column 'd' has type decimal128\(5, 2\)"):
        prepare_batch(dec, key_columns=["id"], event_time_column="ts", feature_columns=["d"])
    dated = t.set_column(1, "ts", pa.array([date(2013, 1, 1)]))
    with pytest.raises(TimestampError, match=r"has type date32.*expected a timestamp"):
        prepare_batch(dated, key_columns=["id"], event_time_column="ts", feature_columns=["x"])


def test_online_batch_without_features_and_half_floats() -> None:
    t = pa.table(
        {"id": [1], "ts": pa.array([T0], pa.timestamp("us")), "h": pa.array([0.5], pa.float16())}
    )
    assert prepare_batch(
        t, key_columns=["id"], event_time_column="ts", feature_columns=[]
    ).payloads == [b"{}"]
    assert prepare_batch(
        t, key_columns=["id"], event_time_column="ts", feature_columns=["h"]
    ).payloads == [b'{"h":0.5}']
