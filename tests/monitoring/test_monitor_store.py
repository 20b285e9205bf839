"""The monitoring tables, one contract over SQLite and PostgreSQL: windows computed
once, results replaced atomically, alert states and events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from prodml.core import ConflictError, SimulatedClock
from prodml.monitoring import MonitorStore, Result
from prodml.monitoring._alerting import SqlAlertStore
from prodml.monitoring._alerts import AlertState
from prodml.storage import MetadataDB

T = datetime(2013, 5, 1, tzinfo=UTC)


@pytest.fixture
def store(db_target: tuple[str, str | None]) -> Iterator[MonitorStore]:
    url, schema = db_target
    db = MetadataDB.open(url, schema_name=schema)
    yield MonitorStore(db)
    db.close()


def _save(store: MonitorStore, day: int, results: list[Result], **kw: object) -> int:
    start = T + timedelta(days=day)
    return store.save_window(
        endpoint="e", arm=str(kw.get("arm", "champion")), model_version="m:1", shadow=False,
        start=start, end=start + timedelta(days=1), rows=10, status="computed", results=results,
        label_rows=0, labels_final=False, now=T,
    )  # fmt: skip


def test_windows_and_results_round_trip_and_a_window_is_stored_once(store: MonitorStore) -> None:
    first = _save(store, 0, [Result("drift", "share", 0.5, details={"top": [{"column": "x"}]})])
    _save(store, 1, [Result("drift", "share", None, status="too_few_rows")])
    assert store.computed("e") == {
        (T, T + timedelta(days=1)), (T + timedelta(days=1), T + timedelta(days=2)),
    }  # fmt: skip
    windows = store.windows(endpoint="e")
    assert [w.start for w in windows] == [T, T + timedelta(days=1)]
    assert windows[0].start.tzinfo is not None
    results = store.results([first])[first]
    assert results == [Result("drift", "share", 0.5, details={"top": [{"column": "x"}]})]
    with pytest.raises(ConflictError):
        _save(store, 0, [])  # the same scope and window again


def test_label_results_are_replaced_not_duplicated(store: MonitorStore) -> None:
    window = _save(
        store, 0, [Result("operational", "rows", 10.0), Result("performance", "roc_auc", 0.7)]
    )
    store.replace_results(
        window,
        ["performance"],
        [Result("performance", "roc_auc", 0.8)],
        label_rows=5,
        labels_final=True,
    )
    results = store.results([window])[window]
    assert sorted((r.metric, r.value) for r in results) == [("roc_auc", 0.8), ("rows", 10.0)]
    assert store.open_label_windows("e") == []
    assert store.windows()[0].label_rows == 5


def test_references_alert_states_and_events(store: MonitorStore) -> None:
    store.save_reference("m:1", "a" * 64, {"training_set": "f"}, T)
    store.save_reference("m:1", "b" * 64, {"training_set": "g"}, T)
    assert store.reference("m:1") == ("b" * 64, {"training_set": "g"})
    assert store.reference("m:2") is None
    alerts = SqlAlertStore(store, SimulatedClock(T))
    state = AlertState(rule="r", scope="endpoint=e/arm=champion", state="firing", first_time=T,
                       fired_at=T, last_time=T, last_value=0.9)  # fmt: skip
    alerts.put(state)
    alerts.put(state)
    assert alerts.get("r", "endpoint=e/arm=champion") == state
    assert [s.state for s in alerts.list(states=["firing"])] == ["firing"]
    assert alerts.list(rule="other") == []
    store.record_event("r", state.scope, "firing", T, {"state": "firing"}, T)
    assert [e["payload"] for e in store.events("r")] == [{"state": "firing"}]
