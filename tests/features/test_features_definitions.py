from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from prodml.core import DefinitionError
from prodml.features import (
    Entity,
    FeatureRepo,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeature,
    ParquetSource,
    PythonSource,
    SqlSource,
)

origin = Entity("origin", join_keys=["origin"])


def weather(ttl: timedelta | None = timedelta(hours=3), **kw: object) -> FeatureView:
    args: dict[str, object] = {
        "entities": [origin],
        "source": ParquetSource("data/weather.parquet"),
        "event_time": "time_hour",
        "ttl": ttl,
        "features": [Field("temp", "float64"), Field("wind_speed", "float64")],
    }
    args.update(kw)
    return FeatureView("weather", **args)  # type: ignore[arg-type]


def test_a_cached_version_follows_an_attribute_set_later() -> None:
    """Versions are computed once per definition (an online read uses them on every
    request) and again after any attribute is set, on views, services and on-demand
    features alike."""
    view = weather()
    first = view.version
    assert view.version is first  # cached
    view.ttl = timedelta(hours=4)
    assert view.version == weather(ttl=timedelta(hours=4)).version != first
    service = FeatureService("svc", [view])
    before = service.version, service.output_names
    service.members = FeatureService("svc", [view[["temp"]]]).members
    assert (service.version, service.output_names) != before
    assert service.output_names == ("temp",)
    hour = OnDemandFeature("h", lambda c: c["x"] // 100, inputs=["x"], dtype="int64")
    old = hour.version
    hour.features = (Field("h", "float64"),)
    assert hour.version != old


def test_version_changes_with_definition_and_only_then() -> None:
    assert weather().version == weather().version
    assert weather().version != weather(ttl=timedelta(hours=4)).version
    assert weather().version != weather(source=ParquetSource("other.parquet")).version
    assert weather().version != weather(features=[Field("temp", "float32")]).version


def rows_a() -> object:
    return None


def rows_b() -> object:
    return 1


def test_python_source_and_on_demand_hash_their_function_source() -> None:
    assert PythonSource(rows_a).spec()["source"] != PythonSource(rows_b).spec()["source"]
    one = OnDemandFeature("h", lambda c: c["x"] // 100, inputs=["x"], dtype="int64")
    two = OnDemandFeature("h", lambda c: c["x"] // 10, inputs=["x"], dtype="int64")
    assert one.version != two.version


def test_projection_and_service_outputs() -> None:
    w = weather()
    hour = OnDemandFeature(
        "dep_hour", lambda c: c["sched_dep_time"] // 100, inputs=["sched_dep_time"], dtype="int64"
    )
    svc = FeatureService("flight_delay", features=[w[["wind_speed"]], hour])
    assert svc.output_names == ("wind_speed", "dep_hour")
    assert svc.join_keys == ("origin",)
    assert svc.version != FeatureService("flight_delay", features=[w, hour]).version


def test_feature_defined_twice_in_a_service_is_rejected() -> None:
    other = FeatureView(
        "other",
        entities=[origin],
        source=SqlSource("SELECT 1"),
        event_time="t",
        features=[Field("temp", "float64")],
    )
    with pytest.raises(
        DefinitionError, match=r"feature name 'temp' is defined twice \(in 'weather' and 'other'\)"
    ):
        FeatureService("svc", features=[weather(), other])


def test_view_used_twice_in_a_service_is_rejected() -> None:
    w = weather()
    with pytest.raises(DefinitionError, match="'weather' appears more than once"):
        FeatureService("svc", features=[w[["temp"]], w[["wind_speed"]]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": []}, "features must be a non-empty list"),
        ({"ttl": timedelta(0)}, "ttl must be a positive timedelta"),
        ({"features": [Field("origin", "string")]}, "reuse a join-key or time column"),
        (
            {"features": [Field("t", "float64"), Field("t", "float64")]},
            "'t' appears more than once",
        ),
        ({"source": "data.parquet"}, "source must be ParquetSource"),
    ],
)
def test_malformed_views_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        weather(**kwargs)


def test_unknown_dtype_and_unknown_feature() -> None:
    with pytest.raises(DefinitionError, match="field 'temp': dtype 'float65' is unknown"):
        weather(features=[Field("temp", "float65")])
    with pytest.raises(DefinitionError, match="has no feature 'pressure'"):
        weather()[["pressure"]]


def test_on_demand_compute_checks_outputs() -> None:
    multi = OnDemandFeature(
        "parts",
        lambda c: {"a": c["x"] + 1},
        inputs=["x"],
        features=[Field("a", "int64"), Field("b", "int64")],
    )
    with pytest.raises(DefinitionError, match=r"did not return output\(s\) \['b'\]"):
        multi.compute({"x": np.array([1])})
    with pytest.raises(DefinitionError, match=r"input\(s\) \['x'\] not provided"):
        multi.compute({"y": np.array([1])})


def test_repo_rejects_two_definitions_under_one_name() -> None:
    repo = FeatureRepo([weather()])
    with pytest.raises(DefinitionError, match="feature view name 'weather' is defined twice"):
        repo.add(weather(ttl=timedelta(hours=9)))


def test_repo_collects_referenced_objects() -> None:
    svc = FeatureService("svc", features=[weather()])
    repo = FeatureRepo([svc])
    assert repo.names("entity") == ["origin"]
    assert repo.names("feature_view") == ["weather"]
