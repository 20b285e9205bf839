from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from prodml.core import SourceError
from prodml.demo._data import FLIGHTS_ROWS, write_flights_data

UTC_US = pa.timestamp("us", tz="UTC")
NEW_YORK = pa.timestamp("us", tz="America/New_York")


def test_row_counts(full_data: tuple[Path, dict[str, int]]) -> None:
    data_dir, counts = full_data
    assert counts == {"flights": FLIGHTS_ROWS, "weather": 26_115, "planes": 3_322}
    assert FLIGHTS_ROWS == 336_776
    for name, rows in counts.items():
        assert pq.read_metadata(data_dir / f"{name}.parquet").num_rows == rows
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "flights.parquet",
        "planes.parquet",
        "weather.parquet",
    ]


def test_column_types(full_data: tuple[Path, dict[str, int]]) -> None:
    data_dir, _ = full_data
    flights = pq.read_schema(data_dir / "flights.parquet")
    expected = {
        **dict.fromkeys(
            ["flight_id", "year", "month", "day", "sched_dep_time", "flight", "hour", "minute"],
            pa.int64(),
        ),
        **dict.fromkeys(["dep_delay", "arr_delay", "air_time", "distance"], pa.float64()),
        **dict.fromkeys(["carrier", "tailnum", "origin", "dest"], pa.string()),
        **dict.fromkeys(["sched_dep", "dep_at", "landed_at"], UTC_US),
        "late": pa.bool_(),
    }
    assert {f.name: f.type for f in flights} == expected
    weather = pq.read_schema(data_dir / "weather.parquet")
    assert weather.field("origin").type == pa.string()
    assert weather.field("time_hour").type == UTC_US
    floats = [
        "temp",
        "dewp",
        "humid",
        "wind_dir",
        "wind_speed",
        "wind_gust",
        "precip",
        "pressure",
        "visib",
    ]
    assert all(weather.field(n).type == pa.float64() for n in floats)
    planes = pq.read_table(data_dir / "planes.parquet")
    assert all(planes.schema.field(n).type == pa.int64() for n in ("year", "seats", "engines"))
    assert all(
        planes.schema.field(n).type == pa.string() for n in ("tailnum", "type", "model", "engine")
    )
    assert planes.schema.field("valid_from").type == UTC_US
    assert pc.unique(planes["valid_from"]).to_pylist() == [
        pa.scalar("2013-01-01T00:00:00Z").cast(UTC_US).as_py()
    ]


def test_times_and_label(full_data: tuple[Path, dict[str, int]]) -> None:
    flights = pq.read_table(full_data[0] / "flights.parquet")
    ids = flights["flight_id"]
    assert pc.count_distinct(ids).as_py() == FLIGHTS_ROWS
    assert (pc.min(ids).as_py(), pc.max(ids).as_py()) == (1, FLIGHTS_ROWS)
    # rows are in time order (the CSV is not): sorted by sched_dep, then flight_id
    order = pc.sort_indices(flights, [("sched_dep", "ascending"), ("flight_id", "ascending")])
    assert order.equals(pa.array(range(FLIGHTS_ROWS), pa.uint64()))
    assert pc.sort_indices(flights["flight_id"])[0].as_py() == 0  # first departure: first CSV row
    # sched_dep is the scheduled departure: in New York local time it reads sched_dep_time
    local = flights["sched_dep"].cast(NEW_YORK)
    hhmm = pc.add(pc.multiply(pc.hour(local), 100), pc.minute(local))
    assert pc.all(pc.equal(hhmm, flights["sched_dep_time"])).as_py()
    assert pc.all(pc.equal(pc.day(local), flights["day"])).as_py()
    assert pc.all(pc.equal(pc.month(local), flights["month"])).as_py()
    # dep_at exists exactly when the flight departed; landed_at exactly when arr_delay is known
    assert flights["dep_at"].null_count == flights["dep_delay"].null_count == 8_255
    landed = flights.filter(pc.is_valid(flights["landed_at"]))
    assert landed.num_rows == FLIGHTS_ROWS - flights["arr_delay"].null_count == 327_346
    assert pc.all(pc.greater(landed["landed_at"], landed["dep_at"])).as_py()
    assert pc.all(pc.greater(landed["landed_at"], landed["sched_dep"])).as_py()
    # late = arr_delay > 15, null when arr_delay is
    assert pc.all(pc.equal(flights["late"], pc.greater(flights["arr_delay"], 15))).as_py()
    assert pc.all(pc.equal(pc.is_null(flights["late"]), pc.is_null(flights["arr_delay"]))).as_py()
    september = flights.filter(pc.equal(flights["month"], 9))
    assert pc.mean(september["late"].cast(pa.float64())).as_py() == pytest.approx(0.132, abs=0.001)


def test_months_subset_keeps_flight_ids(
    full_data: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    counts = write_flights_data(tmp_path, months=[2])
    subset = pq.read_table(tmp_path / "flights.parquet")
    full = pq.read_table(full_data[0] / "flights.parquet")
    expected = full.filter(pc.equal(full["month"], 2))
    assert counts["flights"] == subset.num_rows == expected.num_rows == 24_951
    assert subset.equals(expected)
    assert counts["weather"] == 26_115


def test_rewrite_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    write_flights_data(tmp_path, months=[1])
    counts = write_flights_data(tmp_path, months=[2])
    assert pq.read_metadata(tmp_path / "flights.parquet").num_rows == counts["flights"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("months", [[], [0], [13], [True]])
def test_bad_months_are_rejected(tmp_path: Path, months: list[int]) -> None:
    with pytest.raises(SourceError, match="months must be a non-empty list of integers 1–12"):
        write_flights_data(tmp_path, months=months)
    assert not list(tmp_path.iterdir())
