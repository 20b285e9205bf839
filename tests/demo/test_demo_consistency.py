"""Online/offline consistency on real data: after materializing the flights project
to T, online values for a sample of entities equal the training-set values at T."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prodml import Project
from prodml.demo import flights_features

T = datetime(2013, 2, 15, 13, 30, tzinfo=UTC)


def test_online_equals_offline_at_materialization_time(
    tmp_path: Path, full_data: tuple[Path, dict[str, int]]
) -> None:
    data_dir, _ = full_data
    project = Project.init(tmp_path / "flights", name="flights")
    try:
        shutil.copytree(data_dir, project.root / "data")
        shutil.copy(flights_features.__file__, project.root / "features.py")
        project.features.apply()
        project.features.materialize(start=datetime(2013, 1, 1, tzinfo=UTC), end=T)

        flights = pq.read_table(project.root / "data" / "flights.parquet")
        rng = np.random.default_rng(7)
        sample = flights.take(pa.array(rng.choice(flights.num_rows, 200, replace=False)))
        keys = ("origin", "tailnum", "carrier")
        sample = sample.filter(pc.is_valid(sample["tailnum"]))
        entities = {k: sample[k].to_pylist() for k in keys}
        request = {
            "sched_dep_time": sample["sched_dep_time"].to_pylist(),
            "sched_dep": [T] * sample.num_rows,
        }
        online = project.features.get_online("flight_delay", entities, request, now=T)

        rows = pa.table(
            {
                **{k: sample[k] for k in keys},
                "sched_dep": pa.array([T] * sample.num_rows, pa.timestamp("us", tz="UTC")),
                "sched_dep_time": sample["sched_dep_time"],
            }
        )
        offline = project.features.build_training_set(
            rows, "flight_delay", timestamp="sched_dep"
        ).to_arrow()
        assert sample.num_rows > 150
        for name, values in online.values.items():
            assert values == offline[name].to_pylist(), name
        # the sample is not trivially empty: most entities have live values at T
        assert sum(v is not None for v in online.values["carrier_late_rate_7d"]) > 150
        assert sum(v is not None for v in online.values["temp"]) > 150
    finally:
        project.close()
