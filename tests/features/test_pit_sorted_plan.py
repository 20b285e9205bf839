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
def test_sorted_plan_matches_sql(
    monkeypatch: pytest.MonkeyPatch, seed: int, guard: bool, inclusive: bool, ttl: int | None
) -> None:
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
