"""Property test of the point-in-time join against a brute-force reference.

The reference loops over entity rows in plain Python: it filters each view's rows by
the rules and takes the maximum of ``(event time, created time, position)``; it also
counts, per view, the entity rows that pick a row and those whose pick is stamped exactly
at the entity row's time (the join's report of a view's exact-time ties). Each view
is drawn inclusive (``event_time <= t``) or strict (``event_time < t``, and a guarded
created time ``< t``). Times are
drawn on a coarse grid (hours) so that TTL edges, equal event times, equal created
times and full ties come up often; units, time zones and session settings vary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prodml.features._pit import JoinView, ViewMatch, point_in_time_join, point_in_time_join_matched

HOUR = 3600
BASE = 1_704_067_200  # 2024-01-01T00:00:00Z, in seconds
FAR_PAST = -8_500_000_000  # 1700-ish: with nanoseconds the span no longer packs into 62 bits
UNITS = ("s", "ms", "us", "ns")
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


@dataclass(frozen=True)
class ViewCase:
    name: str
    two_keys: bool
    rows: list[dict[str, Any]]  # fk1, fk2, et, ct, x, n (times in seconds or None)
    ttl_hours: int | None
    has_created: bool
    et_unit: str
    ct_unit: str
    bare_name: bool
    inclusive: bool


@dataclass(frozen=True)
class Case:
    entities: list[dict[str, Any]]  # k1, k2, t (seconds)
    views: list[ViewCase]
    guard: bool
    zone: str | None  # None: naive everywhere
    t_unit: str
    session_zone: str


def _hours(draw: st.DrawFn, low: int, high: int) -> int:
    return BASE + HOUR * draw(st.integers(low, high))


@st.composite
def view_cases(draw: st.DrawFn, index: int) -> ViewCase:
    two_keys = draw(st.booleans())
    has_created = draw(st.booleans())
    wide = draw(st.integers(0, 9)) == 0
    rows = []
    for _ in range(draw(st.integers(0, 14))):
        et = None if draw(st.integers(0, 12)) == 0 else _hours(draw, 0, 8)
        ct = None
        if has_created and draw(st.integers(0, 8)) > 0:
            base = et if et is not None else _hours(draw, 0, 8)
            ct = base + HOUR * draw(st.integers(-1, 3))
        rows.append(
            {
                "fk1": draw(st.one_of(st.none(), st.integers(0, 2))) if draw(st.booleans()) else 1,
                "fk2": draw(st.sampled_from([None, "a", "b"])),
                "et": et,
                "ct": ct,
                "x": draw(st.one_of(st.none(), st.floats(-5, 5, allow_nan=False))),
                "n": draw(st.one_of(st.none(), st.integers(-9, 9))),
            }
        )
    if wide:
        rows.append(dict(rows[0] if rows else {"fk1": 1, "fk2": "a", "x": 1.0, "n": 1}))
        rows[-1].update(et=FAR_PAST, ct=FAR_PAST if has_created else None)
    rows = draw(st.permutations(rows))
    return ViewCase(
        name=f"v{index}",
        two_keys=two_keys,
        rows=list(rows),
        ttl_hours=draw(st.sampled_from([None, 0, 1, 2, 5])),
        has_created=has_created,
        et_unit="ns" if wide else draw(st.sampled_from(UNITS)),
        ct_unit=draw(st.sampled_from(UNITS)),
        bare_name=draw(st.booleans()),
        inclusive=draw(st.booleans()),
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    entities: list[dict[str, Any]] = [
        {
            "k1": draw(st.one_of(st.none(), st.integers(0, 3))) if draw(st.booleans()) else 1,
            "k2": draw(st.sampled_from([None, "a", "b"])),
            "t": _hours(draw, -1, 10),
        }
        for _ in range(draw(st.integers(0, 20)))
    ]
    duplicate = draw(st.booleans())
    if entities and duplicate:
        entities += draw(st.lists(st.sampled_from(entities), max_size=5))  # duplicate rows
        entities = list(draw(st.permutations(entities)))
    n_views = draw(st.integers(1, 3))
    return Case(
        entities=entities,
        views=[draw(view_cases(i)) for i in range(n_views)],
        guard=draw(st.booleans()),
        zone=draw(st.sampled_from([None, "UTC", "Asia/Kolkata", "America/New_York"])),
        t_unit=draw(st.sampled_from(UNITS)),
        session_zone=draw(st.sampled_from(["UTC", "America/Los_Angeles", "Asia/Tokyo"])),
    )


def _times(seconds: list[int | None], unit: str, zone: str | None) -> pa.Array:
    scaled = [None if s is None else s * PER_SECOND[unit] for s in seconds]
    return pa.array(scaled, pa.timestamp(unit, tz=zone))


def _feature_table(view: ViewCase, zone: str | None) -> pa.Table:
    rows = view.rows
    columns: dict[str, pa.Array] = {
        "fk1": pa.array([r["fk1"] for r in rows], pa.int32()),
        "fk2": pa.array([r["fk2"] for r in rows], pa.string()),
        "et": _times([r["et"] for r in rows], view.et_unit, zone),
        "x": pa.array([r["x"] for r in rows], pa.float64()),
        "n": pa.array([r["n"] for r in rows], pa.int64()),
    }
    if view.has_created:
        columns["ct"] = _times([r["ct"] for r in rows], view.ct_unit, zone)
    return pa.table(columns)


def _join_view(view: ViewCase, relation: str) -> JoinView:
    keys = (("k1", "fk1"), ("k2", "fk2")) if view.two_keys else (("k1", "fk1"),)
    return JoinView(
        name=view.name,
        relation=relation,
        join_keys=keys,
        event_time="et",
        created_time="ct" if view.has_created else None,
        ttl=None if view.ttl_hours is None else timedelta(hours=view.ttl_hours),
        features=(("x", f"{view.name}__x"), ("n", f"{view.name}__n")),
        inclusive=view.inclusive,
    )


def _pick(case: Case, view: ViewCase, entity: dict[str, Any]) -> int | None:
    """The position of the feature row an entity row picks from a view, None when none."""
    keys = [entity["k1"], entity["k2"]] if view.two_keys else [entity["k1"]]
    t = entity["t"]
    best: tuple[int, float, int] | None = None
    for position, row in enumerate(view.rows):
        row_keys = [row["fk1"], row["fk2"]] if view.two_keys else [row["fk1"]]
        if None in keys or row_keys != keys or row["et"] is None:
            continue
        if row["et"] > t or (not view.inclusive and row["et"] == t):
            continue
        if view.ttl_hours is not None and row["et"] < t - view.ttl_hours * HOUR:
            continue
        created = row["ct"] if view.has_created else None
        known = created is None or created < t or (view.inclusive and created == t)
        if case.guard and not known:
            continue
        rank = (row["et"], float("-inf") if created is None else created, position)
        if best is None or rank > best:
            best = rank
    return None if best is None else best[2]


def reference(case: Case) -> dict[str, list[Any]]:
    """Brute force: per entity row and view, filter the candidates and take the maximum."""
    out: dict[str, list[Any]] = {}
    for view in case.views:
        picks = [_pick(case, view, entity) for entity in case.entities]
        out[f"{view.name}__x"] = [None if p is None else view.rows[p]["x"] for p in picks]
        out[f"{view.name}__n"] = [None if p is None else view.rows[p]["n"] for p in picks]
    return out


def reference_matches(case: Case) -> dict[str, ViewMatch]:
    """Brute force: per view, the entity rows that pick a row, and those whose pick is
    stamped exactly at the entity row's own time."""
    out: dict[str, ViewMatch] = {}
    for view in case.views:
        picks = [(entity["t"], _pick(case, view, entity)) for entity in case.entities]
        picked = [(t, p) for t, p in picks if p is not None]
        exact = sum(1 for t, p in picked if view.rows[p]["et"] == t)
        out[view.name] = ViewMatch(picked=len(picked), exact_time=exact)
    return out


def _register(con: duckdb.DuckDBPyConnection, case: Case) -> tuple[pa.Table, list[JoinView]]:
    """The case's entity rows, and its views registered on ``con`` (session zone set)."""
    con.execute(f"SET TimeZone = '{case.session_zone}'")
    entity_rows = pa.table(
        {
            "k1": pa.array([e["k1"] for e in case.entities], pa.int64()),
            "k2": pa.array([e["k2"] for e in case.entities], pa.string()),
            "ts": _times([e["t"] for e in case.entities], case.t_unit, case.zone),
        }
    )
    views = []
    for view in case.views:
        table_name = f"features_{view.name}"
        con.register(table_name, _feature_table(view, case.zone))
        relation = table_name if view.bare_name else f"SELECT * FROM {table_name}"
        views.append(_join_view(view, relation))
    return entity_rows, views


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_matches_brute_force_reference(con: duckdb.DuckDBPyConnection, case: Case) -> None:
    entity_rows, views = _register(con, case)

    result = point_in_time_join(con, entity_rows, "ts", views, created_time_guard=case.guard)

    expected = reference(case)
    assert result.column_names == list(expected)
    assert result.num_rows == len(case.entities)
    assert result.to_pydict() == expected
    zone = con.sql("SELECT current_setting('TimeZone')").fetchall()[0][0]
    assert zone == case.session_zone


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_exact_time_ties_match_brute_force(con: duckdb.DuckDBPyConnection, case: Case) -> None:
    """Per view, the rows that picked a feature row and those whose pick is stamped exactly
    at their own time, for inclusive and strict views (a strict view never has one)."""
    entity_rows, views = _register(con, case)

    joined = point_in_time_join_matched(
        con, entity_rows, "ts", views, created_time_guard=case.guard
    )

    assert joined.matches == reference_matches(case)
    assert joined.table.to_pydict() == reference(case)
    for view in case.views:
        if not view.inclusive:
            assert joined.matches[view.name].exact_time == 0
