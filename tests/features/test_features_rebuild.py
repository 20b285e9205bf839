"""``materialize(rebuild=True)``: the online records and watermarks of the views' current
versions are dropped and materialized again from the start, so the online store equals
a fresh materialization — also after the source's rows changed under an unchanged view."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from featurekit import FEATURES_PY, T0, make_project, planes_table, weather_table
from prodml import Project
from prodml.core import FeatureNotFoundError
from servicekit import redis_url_or_skip

END = T0 + timedelta(days=4, hours=6)
ENTITIES = {"origin": ["EWR", "JFK", "LGA", "XXX"], "tailnum": ["N1", "N2", "N3", "N9"]}
REQUEST = {"sched_dep_time": [517, 1230, 2359, 800]}


def _changed_sources(root: Path) -> None:
    """Correct weather values in place (same event times), drop LGA's rows, and change
    plane N1's year without a newer row: nothing an incremental run would pick up."""
    weather = weather_table()
    weather = weather.set_column(
        weather.schema.get_field_index("temp"), "temp", pc.add(weather["temp"], 100.0)
    )
    weather = weather.filter(pc.not_equal(weather["origin"], "LGA"))
    pq.write_table(weather, root / "data" / "weather.parquet")
    planes = planes_table()
    years = pa.array([1970, 1998, 2010], pa.int64())
    planes = planes.set_column(planes.schema.get_field_index("year"), "year", years)
    pq.write_table(planes, root / "data" / "planes.parquet")


def _online(project: Project) -> dict[str, Any]:
    online = project.features.get_online("flight_delay", ENTITIES, REQUEST, now=END)
    return {
        "values": online.values,
        "found": {view: fresh.found for view, fresh in online.freshness.items()},
    }


def _fresh(tmp_path: Path) -> dict[str, Any]:
    """The online state of a new project on the changed sources, materialized once."""
    fresh = make_project(tmp_path / "fresh")
    try:
        _changed_sources(fresh.root)
        fresh.features.apply()
        fresh.features.materialize(end=END)
        return _online(fresh)
    finally:
        fresh.close()


def test_rebuild_equals_a_fresh_materialization_after_the_source_changed(
    project: Project, tmp_path: Path
) -> None:
    project.features.apply()
    first = project.features.materialize(end=END)
    _changed_sources(project.root)
    again = project.features.materialize(end=END)
    assert all(r.rows_read == 0 for r in again)  # the watermark hides the change
    expected = _fresh(tmp_path)
    assert _online(project) != expected

    rebuilt = {r.view: r for r in project.features.materialize(end=END, rebuild=True)}
    assert _online(project) == expected
    assert expected["found"]["weather"] == [True, True, False, False]
    assert rebuilt["weather"].removed == 3  # one record per origin
    assert rebuilt["planes"].removed == 3
    assert rebuilt["weather"].watermark == END
    assert rebuilt["weather"].to_dict()["removed"] == 3
    assert all(r.removed is None for r in first)  # not a rebuild
    # The watermark starts again from the rebuild: the next run is incremental.
    assert all(r.rows_read == 0 for r in project.features.materialize(end=END))


def test_rebuild_of_some_views_leaves_the_others(project: Project, tmp_path: Path) -> None:
    project.features.apply()
    project.features.materialize(end=END)
    before = _online(project)
    _changed_sources(project.root)
    results = project.features.materialize(end=END, views=["weather"], rebuild=True)
    assert [r.view for r in results] == ["weather"]
    after = _online(project)
    expected = _fresh(tmp_path)
    assert after["values"]["temp"] == expected["values"]["temp"]
    assert after["values"]["year"] == before["values"]["year"]  # planes: not rebuilt


def test_rebuild_is_refused_before_anything_is_deleted(project: Project) -> None:
    project.features.apply()
    project.features.materialize(end=END)
    before = _online(project)
    (project.root / "features.py").write_text(FEATURES_PY.replace("hours=3", "hours=4"))
    project.features.reload()
    with pytest.raises(FeatureNotFoundError, match=r"differs from the applied version"):
        project.features.materialize(end=END, rebuild=True)
    with pytest.raises(FeatureNotFoundError, match=r"'nope'"):
        project.features.materialize(end=END, views=["planes", "nope"], rebuild=True)
    (project.root / "features.py").write_text(FEATURES_PY)
    project.features.reload()
    assert _online(project) == before


@pytest.mark.integration
def test_rebuild_on_a_redis_online_store(tmp_path: Path) -> None:
    import redis

    url = redis_url_or_skip()
    prefix = f"prodml_test_{uuid.uuid4().hex[:8]}"
    environ = {
        "PRODML__ONLINE_STORE__TYPE": "redis",
        "PRODML__ONLINE_STORE__URL": url,
        "PRODML__ONLINE_STORE__KEY_PREFIX": prefix,
    }
    make_project(tmp_path / "proj").close()
    project = Project.open(tmp_path / "proj", environ=environ)
    try:
        assert type(project.features.online).__name__ == "RedisOnlineStore"
        project.features.apply()
        project.features.materialize(end=END)
        _changed_sources(project.root)
        results = project.features.materialize(end=END, rebuild=True)
        assert {r.view: r.removed for r in results} == {"weather": 3, "planes": 3}
        assert _online(project) == _fresh(tmp_path)
    finally:
        project.close()
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
