"""The point-in-time trap of the flights scenario: a carrier's recent late rate may only
use flights whose outcome was known — that had landed — at a flight's scheduled
departure. Checked against an independent brute force and by mutating the future."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from prodml import Project
from prodml.demo import flights_features as ff
from prodml.demo._data import write_flights_data
from prodml.features import FeatureService, FeatureView, SqlSource

TTL = timedelta(days=2)
WINDOW = timedelta(days=7)
CUT = datetime(2013, 1, 20, tzinfo=UTC)
_US = 1_000_000
_CARRIER_SPAN = 10**16  # > any timestamp in microseconds: (carrier, time) as one sortable key


def make_project(root: Path, months: list[int]) -> Project:
    project = Project.init(root, name="flights")
    write_flights_data(root / "data", months=months)
    (root / "features.py").write_text(
        Path(ff.__file__).read_text(encoding="utf-8"), encoding="utf-8"
    )
    project.features.apply()
    return project


def brute_force_carrier_rate(
    flights: pa.Table, rows: pa.Table, *, known_at: str = "landed_at"
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """For each row (carrier, sched_dep): the latest ``known_at`` time t ≤ sched_dep of a
    labelled flight of that carrier, if within the TTL; then the late rate and count over
    that carrier's labelled flights with ``known_at`` in [t − 7 days, t]."""
    labelled = flights.filter(pc.is_valid(flights["late"]))
    carriers = pc.unique(flights["carrier"])

    def keys(table: pa.Table, column: str) -> npt.NDArray[np.int64]:
        code = pc.index_in(table["carrier"], value_set=carriers).to_numpy().astype(np.int64)
        micros = table[column].cast(pa.int64()).to_numpy()
        return np.asarray(code * _CARRIER_SPAN + micros, dtype=np.int64)

    known = keys(labelled, known_at)
    order = np.argsort(known, kind="stable")
    known = known[order]
    late = labelled["late"].to_numpy(zero_copy_only=False).astype(np.int64)[order]
    late_before = np.concatenate([[0], np.cumsum(late)])

    at = keys(rows, "sched_dep")
    carrier_base = at - at % _CARRIER_SPAN
    hi = np.searchsorted(known, at, side="right")  # flights known by the row's time
    anchor = known[np.maximum(hi - 1, 0)]
    visible = (hi > 0) & (anchor >= carrier_base) & (anchor >= at - int(TTL.total_seconds()) * _US)
    lo = np.searchsorted(known, anchor - int(WINDOW.total_seconds()) * _US, side="left")
    count = np.where(visible, hi - lo, 0)
    rate = np.where(visible, (late_before[hi] - late_before[lo]) / np.maximum(count, 1), np.nan)
    return rate, count, visible


@pytest.fixture(scope="module")
def jan_feb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = make_project(tmp_path_factory.mktemp("flights") / "proj", months=[1, 2])
    try:
        yield project
    finally:
        project.close()


def test_carrier_rate_matches_brute_force_over_landed_flights(jan_feb: Project) -> None:
    flights = pq.read_table(jan_feb.root / "data" / "flights.parquet")
    rows = ff.entity_rows(flights)
    training = jan_feb.features.build_training_set(
        rows, "flight_delay", timestamp="sched_dep", label="late"
    )
    table = training.table
    assert table["flight_id"].equals(rows["flight_id"])

    rate, count, visible = brute_force_carrier_rate(flights, rows)
    assert visible.mean() > 0.95
    joined_rate = table["carrier_late_rate_7d"].to_numpy(zero_copy_only=False)
    joined_count = table["carrier_flights_7d"].to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(np.isnan(joined_rate), ~visible)
    np.testing.assert_allclose(joined_rate[visible], rate[visible], rtol=1e-12)
    np.testing.assert_array_equal(joined_count[visible], count[visible])

    # the trap is real: counting flights that had merely departed sees other outcomes
    _, leaky_count, leaky_visible = brute_force_carrier_rate(flights, rows, known_at="dep_at")
    both = visible & leaky_visible
    assert (leaky_count[both] != count[both]).mean() > 0.5

    # the other views join too
    assert table["temp"].null_count / table.num_rows < 0.01
    assert table["plane_year"].null_count < table.num_rows * 0.2


def _flip_late_after(path: Path, cut: datetime) -> int:
    flights = pq.read_table(path)
    after = pc.greater(flights["landed_at"], pa.scalar(cut, pa.timestamp("us", tz="UTC")))
    flipped = pc.if_else(after, pc.invert(flights["late"]), flights["late"])
    index = flights.schema.get_field_index("late")
    pq.write_table(flights.set_column(index, "late", flipped), path)
    return int(pc.sum(after).as_py())


def test_future_outcomes_do_not_reach_earlier_departures(tmp_path: Path) -> None:
    """Flip the outcome of every flight landing after CUT: features of flights departing
    before CUT must not change. A view stamped with the departure time fails this."""
    with make_project(tmp_path / "proj", months=[1]) as project:
        source = ff.carrier_delays.source
        assert isinstance(source, SqlSource)
        at_departure = source.query.replace(
            "SELECT carrier, landed_at", "SELECT carrier, dep_at"
        ).replace("ORDER BY landed_at", "ORDER BY dep_at")
        assert at_departure.count("dep_at") == 2
        leaky_view = FeatureView(
            "carrier_delays_at_departure",
            entities=[ff.carrier],
            source=SqlSource(at_departure),
            event_time="dep_at",
            ttl=ff.carrier_delays.ttl,
            features=list(ff.carrier_delays.features),
        )
        project.features.apply([leaky_view, FeatureService("leaky", features=[leaky_view])])

        path = project.root / "data" / "flights.parquet"
        rows = ff.entity_rows(pq.read_table(path))
        before = pc.less(rows["sched_dep"], pa.scalar(CUT, pa.timestamp("us", tz="UTC")))
        assert 0.5 < pc.mean(before.cast(pa.float64())).as_py() < 0.7

        def features(service: str) -> pa.Table:
            built = project.features.build_training_set(
                rows, service, timestamp="sched_dep", label="late"
            )
            names = [n for n in built.table.column_names if n not in rows.column_names]
            return built.table.select(names)

        honest, leaky = features("flight_delay"), features("leaky")
        assert _flip_late_after(path, CUT) > 10_000
        honest_after, leaky_after = features("flight_delay"), features("leaky")

        assert honest_after.filter(before).equals(honest.filter(before))
        assert not leaky_after.filter(before).equals(leaky.filter(before))
        # the mutation is visible once the flipped flights have landed
        after = pc.invert(before)
        assert not honest_after.filter(after).equals(honest.filter(after))
