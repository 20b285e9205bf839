"""The AlertStore contract, run over every registered alert store: in memory, and in the
metadata DB on each of its dialects (SQLite always, PostgreSQL if reachable)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contractkit import Contract, backend_of
from prodml.core import SimulatedClock
from prodml.monitoring import MonitorStore
from prodml.monitoring._alerts import (
    ALERT_STORES,
    AlertState,
    AlertStore,
    MemoryAlertStore,
    open_alert_store,
)
from prodml.storage import MetadataDB

T0 = datetime(2013, 1, 1, tzinfo=UTC)

#: Opens a store of one case: ``(request, tmp_path) -> (store, close)``.
Opener = Callable[[pytest.FixtureRequest, Path], tuple[AlertStore, Callable[[], None]]]


def _memory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[AlertStore, Callable[[], None]]:
    return MemoryAlertStore(), lambda: None


def _sql(url: str, schema: str | None) -> tuple[AlertStore, Callable[[], None]]:
    db = MetadataDB.open(url, schema_name=schema)
    return open_alert_store("sql", MonitorStore(db), SimulatedClock(T0)), db.close


def _sql_sqlite(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[AlertStore, Callable[[], None]]:
    return _sql(f"sqlite:///{tmp_path}/meta.db", None)


def _sql_postgresql(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[AlertStore, Callable[[], None]]:
    """In a fresh schema of the test PostgreSQL; skips when it is unreachable."""
    url: str = request.getfixturevalue("pg_url")
    return _sql(url, request.getfixturevalue("pg_schema_factory")())


CONTRACT: Contract[Opener] = Contract(
    ALERT_STORES,
    {"memory": _memory, "sql:postgresql": _sql_postgresql, "sql:sqlite": _sql_sqlite},
    integration={"sql:postgresql"},
)


def test_alert_store_contract_covers_every_registered_store() -> None:
    CONTRACT.check()


@pytest.fixture(params=CONTRACT.cases())
def alert_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStore]:
    """Every AlertStore backend; the contract below runs against each."""
    store, close = CONTRACT.factory(request.param)(request, tmp_path)
    assert isinstance(store, ALERT_STORES.load(backend_of(request.param)))
    yield store
    close()


def test_store_contract(alert_store: AlertStore) -> None:
    scope = "endpoint=flight_delay/arm=champion/column=dep_delay"
    assert alert_store.get("drift", scope) is None
    assert alert_store.list() == []
    a = AlertState(rule="drift", scope="endpoint=b")
    b = AlertState(rule="drift", scope="endpoint=a", state="firing", first_time=T0)
    c = AlertState(rule="latency", scope="endpoint=a", state="pending")
    for state in (a, b, c):
        alert_store.put(state)
    assert alert_store.get("drift", "endpoint=a") == b
    assert alert_store.list() == [b, a, c]
    assert alert_store.list(rule="drift") == [b, a]
    assert alert_store.list(states=["firing", "pending"]) == [b, c]
    assert alert_store.list(rule="latency", states=["firing"]) == []
    replaced = AlertState(rule="drift", scope="endpoint=b", state="resolved", suppressed=2)
    alert_store.put(replaced)
    assert alert_store.get("drift", "endpoint=b") == replaced
    assert len(alert_store.list()) == 3


def test_store_keeps_every_field_of_a_state(alert_store: AlertStore) -> None:
    state = AlertState(
        rule="drift",
        scope="endpoint=a/column=x%2Fy",
        state="firing",
        first_time=T0,
        fired_at=T0,
        last_time=T0,
        last_value=0.75,
        history=((T0, True),),
        evidence=({"window_end": T0.isoformat(), "value": 0.75, "details": {"top": ["x"]}},),
        last_notified="firing",
        last_notified_at=T0,
        suppressed=1,
    )
    alert_store.put(state)
    assert alert_store.get("drift", "endpoint=a/column=x%2Fy") == state
    assert alert_store.get("drift", "endpoint=a") is None


def test_open_alert_store_builds_each_registered_kind(tmp_path: Path) -> None:
    db = MetadataDB.open(f"sqlite:///{tmp_path}/meta.db")
    try:
        for kind in ALERT_STORES:
            store = open_alert_store(kind, MonitorStore(db), SimulatedClock(T0))
            assert isinstance(store, ALERT_STORES.load(kind))
    finally:
        db.close()
