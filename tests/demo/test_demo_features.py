from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prodml.demo import flights_features as ff
from prodml.features import FeatureRepo
from prodml.features._on_demand import apply_on_demand


def test_module_defines_the_flights_repository() -> None:
    repo = FeatureRepo.from_file(Path(ff.__file__))
    assert repo.names("entity") == ["carrier", "flight", "origin", "plane"]
    assert repo.names("feature_view") == [
        "carrier_delays", "origin_departures", "planes", "weather",
    ]  # fmt: skip
    assert repo.names("feature_service") == ["flight_delay"]
    assert ff.flight_delay.output_names == (
        "temp", "dewp", "humid", "wind_speed", "precip", "visib",
        "plane_year", "seats",
        "carrier_late_rate_7d", "carrier_flights_7d",
        "origin_dep_delay_2h", "origin_departures_2h",
        "dep_hour", "dep_weekday", "dep_month",
    )  # fmt: skip
    assert ff.flight_delay.join_keys == ("origin", "tailnum", "carrier")
    assert ff.carrier_delays.event_time == "landed_at"
    assert ff.origin_departures.event_time == "dep_at"


def test_module_imports_only_what_a_project_file_may() -> None:
    text = Path(ff.__file__).read_text(encoding="utf-8")
    imports = {
        line.split()[1] for line in text.splitlines() if line.startswith(("import ", "from "))
    }
    assert imports <= {
        "__future__",
        "collections.abc",
        "datetime",
        "typing",
        "numpy",
        "numpy.typing",
        "prodml.features",
    }
    assert "import prodml.demo" not in text
    assert "from prodml.demo" not in text


def test_on_demand_features_give_the_local_date(full_data: tuple[Path, dict[str, int]]) -> None:
    flights = pq.read_table(
        full_data[0] / "flights.parquet", columns=["sched_dep", "sched_dep_time", "hour"]
    )
    table = apply_on_demand(flights, ff.flight_delay.on_demand)
    local = flights["sched_dep"].cast(pa.timestamp("us", tz="America/New_York"))
    assert table.schema.field("dep_weekday").type == pa.int64()
    assert table["dep_hour"].equals(flights["hour"])
    assert table["dep_weekday"].equals(pc.day_of_week(local).cast(pa.int64()))
    assert table["dep_month"].equals(pc.month(local).cast(pa.int64()))


def test_entity_rows_keep_labelled_flights_in_order(full_data: tuple[Path, dict[str, int]]) -> None:
    flights = pq.read_table(full_data[0] / "flights.parquet")
    rows = ff.entity_rows(flights)
    assert rows.column_names == list(ff.ENTITY_COLUMNS)
    assert rows.num_rows == 327_346
    assert rows["late"].null_count == 0
    kept = pc.is_in(flights["flight_id"], rows["flight_id"])
    assert rows["flight_id"].equals(flights.filter(kept)["flight_id"])
