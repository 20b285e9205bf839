"""The NumPy running plan (``_pit_plan._running_sorted``) picks what the SQL plans pick.

Random rows with many ties in (key, event time), equal created times, null created
times, null keys and event times, late-arriving rows, entity times exactly at event
times, created times and TTL bounds; guard on and off, inclusive and strict.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.features import _pit_plan
from prodml.features._pit_plan import pick_rows


def _data(seed: int, n: int) -> dict[str, pa.ChunkedArray]:
    rng = np.random.default_rng(seed)
    keys = rng.integers(-3, 20, n)
    event = rng.integers(0, 200, n) * 10
    created = event + np.where(rng.random(n) < 0.3, rng.integers(0, 300, n), 0)
    m = n // 2
    entity_times = rng.integers(-10, 2_200, m)
    pick = rng.integers(0, n, m)
    kind = rng.random(m)
    entity_keys = np.where(kind < 0.7, keys[pick], rng.integers(-5, 25, m))
    entity_times = np.where(kind < 0.2, event[pick], entity_times)
    entity_times = np.where((kind >= 0.2) & (kind < 0.35), created[pick], entity_times)
    entity_times = np.where((kind >= 0.35) & (kind < 0.5), event[pick] + 500, entity_times)

    def chunked(values: np.ndarray, null_share: float) -> pa.ChunkedArray:
        mask = rng.random(len(values)) < null_share
        return pa.chunked_array([pa.array(values, pa.int64(), mask=mask)])

    return {
        "feature_keys": chunked(keys, 0.02),
        "event": chunked(event, 0.02),
        "created": chunked(created, 0.1),
        "entity_keys": chunked(entity_keys, 0.02),
        "entity_times": pa.chunked_array([pa.array(entity_times, pa.int64())]),
    }


def _pick(data: dict[str, pa.ChunkedArray], **options: object) -> list[tuple[int, int]]:
    rows, ords = pick_rows(
        duckdb.connect(),
        entity_keys=[data["entity_keys"]],
        entity_times=data["entity_times"],
        feature_keys=[data["feature_keys"]],
        event=data["event"],
        created=data["created"],
        name="t",
        **options,  # type: ignore[arg-type]
    )
    return sorted(zip(rows.tolist(), ords.tolist(), strict=True))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("guard", [True, False])
@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("ttl", [None, 500])
@pytest.mark.parametrize("parallel_rows", [0, 10**9], ids=["entity-side-on-a-thread", "serial"])
@pytest.mark.parametrize("rows_per_key", [64, 10**9], ids=["one-sort", "grouped-by-key-first"])
def test_sorted_plan_matches_sql(
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    guard: bool,
    inclusive: bool,
    ttl: int | None,
    parallel_rows: int,
    rows_per_key: int,
) -> None:
    monkeypatch.setattr(_pit_plan, "_PARALLEL_ROWS", parallel_rows)
    monkeypatch.setattr(_pit_plan, "_ROWS_PER_KEY", rows_per_key)
    data = _data(seed, 3_000)
    calls: list[bool] = []
    real = _pit_plan._running_sorted

    def spy(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(result is not None)
        return result

    monkeypatch.setattr(_pit_plan, "_running_sorted", spy)
    fast = _pick(data, guard=guard, ttl=ttl, inclusive=inclusive)
    assert calls == [True]
    monkeypatch.setattr(_pit_plan, "_running_sorted", lambda *a, **k: None)
    slow = _pick(data, guard=guard, ttl=ttl, inclusive=inclusive)
    assert fast == slow
    assert len(fast) > 100


@settings(max_examples=300, deadline=None)
@given(
    keys=st.integers(1, 2_000),
    time_bits=st.integers(0, 40),
    rows=st.integers(0, 3_000),
    seed=st.integers(0, 2**32 - 1),
    rows_per_key=st.sampled_from([1, 64, 10**9]),
)
def test_packed_order_sorts_every_value(
    keys: int, time_bits: int, rows: int, seed: int, rows_per_key: int
) -> None:
    rng = np.random.default_rng(seed)
    packed = (rng.integers(0, keys, rows) << time_bits) | rng.integers(0, 2**time_bits, rows)
    packed[rng.random(rows) < 0.1] = packed[0] if rows else 0  # ties
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_pit_plan, "_ROWS_PER_KEY", rows_per_key)
        order = _pit_plan._packed_order(packed, time_bits)
    assert np.array_equal(np.sort(order), np.arange(rows))  # a permutation
    assert np.array_equal(packed[order], np.sort(packed))


def test_packed_order_takes_negative_values_and_huge_keys() -> None:
    packed = np.array([5, -3, 2**62, 0, -(2**63), 7], dtype=np.int64)
    order = _pit_plan._packed_order(packed, 3)
    assert np.array_equal(packed[order], np.sort(packed))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("members_in_order", [False, True])
@pytest.mark.parametrize("spread", [100, 2**40, 2**62])
def test_tie_order_is_the_three_key_lexsort(seed: int, members_in_order: bool, spread: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 3_000))
    group = np.sort(rng.integers(-(2**62), 2**62, m) // (2**60) * (2**60) + rng.integers(0, 4, m))
    created = rng.choice(
        [np.iinfo(np.int64).min, 0, 5, spread, -spread, *rng.integers(-50, 50, 5)], m
    )
    members = rng.permutation(10 * m)[:m]
    if members_in_order:  # as a stable rank sort leaves them: increasing within a group
        members = members[np.lexsort((members, group))]
    expected = np.lexsort((members, created, group))
    assert np.array_equal(_pit_plan._tie_order(group, created, members), expected)
    fast = _pit_plan._within_groups(_pit_plan._dense_ranks(group), created, members)
    if members_in_order and spread < 2**60:
        assert fast is not None  # the one-sort path was taken
    if fast is not None:
        assert np.array_equal(fast, expected)


def test_tie_order_takes_all_null_created_times() -> None:
    group = np.array([1, 1, 1, 2, 2])
    members = np.array([3, 7, 9, 1, 4])
    created = np.full(5, np.iinfo(np.int64).min)
    expected = np.lexsort((members, created, group))
    assert np.array_equal(_pit_plan._tie_order(group, created, members), expected)


def test_tie_order_falls_back_to_lexsort_when_ranks_do_not_pack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    group = np.sort(rng.integers(0, 50, 200))
    created, members = rng.integers(0, 30, 200), rng.permutation(200)
    expected = np.lexsort((members, created, group))
    calls: list[int] = []
    real = np.lexsort

    def counting(keys: object) -> np.ndarray:
        calls.append(1)
        return real(keys)  # type: ignore[arg-type]

    monkeypatch.setattr(_pit_plan.np, "lexsort", counting)
    assert np.array_equal(_pit_plan._tie_order(group, created, members), expected)
    assert calls == []  # 6 + 5 + 8 bits pack
    monkeypatch.setattr(_pit_plan, "_TIE_BITS", 18)
    assert np.array_equal(_pit_plan._tie_order(group, created, members), expected)
    assert calls == [1]
