from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prodml.core import DefinitionError, SimulatedClock, SystemClock, check_name, new_id, parse_ref


def test_system_clock_is_utc_aware() -> None:
    assert SystemClock().now().tzinfo is not None


def test_simulated_clock_moves_only_forward() -> None:
    clock = SimulatedClock(datetime(2013, 1, 1))
    assert clock.now() == datetime(2013, 1, 1, tzinfo=UTC)
    clock.advance(timedelta(minutes=5))
    assert clock.monotonic() == 300
    with pytest.raises(ValueError, match="backwards"):
        clock.set(datetime(2012, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match=">= 0"):
        clock.advance(timedelta(seconds=-1))


def test_ids_are_unique_and_ordered() -> None:
    ids = [new_id("run") for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(i.startswith("run-") for i in ids)


@pytest.mark.parametrize("bad", ["", "1abc", "a b", "x" * 200, "a.b"])
def test_bad_names_are_rejected(bad: str) -> None:
    with pytest.raises(DefinitionError, match="feature view name"):
        check_name(bad, kind="feature view")


@pytest.mark.parametrize("bad", ["model", "model:x", "model@", ":3"])
def test_bad_refs(bad: str) -> None:
    with pytest.raises(DefinitionError):
        parse_ref(bad)
