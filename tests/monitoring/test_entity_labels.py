"""Labels sent by entity keys and event time: the label index matches them to the
prediction records of those keys logged at that exact time, ranks them with request-id
labels, and the monitor's realized metrics come out as with the same labels sent by
request id."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prodml import Project
from prodml.core import SimulatedClock, SystemClock
from prodml.monitoring._records import LabelIndex
from prodml.serving import Prediction, PredictionLog, parse_feedback
from prodml.storage import MemoryLogStore

T = datetime(2013, 3, 1, 5, tzinfo=UTC)
LATER = T + timedelta(hours=2)
US = timedelta(microseconds=1)


def _predictions(records: Sequence[dict[str, Any]]) -> MemoryLogStore:
    """A prediction log of endpoint ``e`` holding ``records`` (time offsets in µs)."""
    store = MemoryLogStore("predictions")
    with store.open_writer(clock=SystemClock()) as writer:
        for record in records:
            writer.append({"endpoint": "e", "row": 0, **record})
    return store


def _labels(items: Sequence[dict[str, Any]]) -> MemoryLogStore:
    """A label log holding ``items`` checked as feedback is, in order, one second apart
    (a ``row``, which a label import or job may name, is added after the check)."""
    store = MemoryLogStore("labels")
    body = [
        {"endpoint": "e", "time": (LATER + timedelta(seconds=i)).isoformat(), **item}
        for i, item in enumerate(items)
    ]
    rows = [item.pop("row", None) for item in body]
    records = parse_feedback({"items": body}, now=LATER + timedelta(hours=1))
    for record, row in zip(records, rows, strict=True):
        if row is not None:
            record["row"] = row
    with store.open_writer(clock=SystemClock()) as writer:
        writer.extend(records)
    return store


def _latest(labels: MemoryLogStore, predictions: MemoryLogStore | None) -> dict[Any, float]:
    """(request id, row) → label, as the index gives them."""
    table = LabelIndex(labels, "e", predictions=predictions).get(T - timedelta(days=1))
    return {
        (r["request_id"], r["row"]): r["label"]
        for r in table.to_pylist()  # a handful of rows: read them to compare
    }


def _at(offset_us: int) -> str:
    return (T + offset_us * US).isoformat()


def test_an_entity_label_answers_the_records_of_all_its_keys_at_exactly_its_event_time() -> None:
    predictions = _predictions(
        [
            {"time": T, "request_id": "a", "entity.flight": 1, "entity.origin": "JFK"},
            {"time": T + US, "request_id": "b", "entity.flight": 1, "entity.origin": "JFK"},
            {"time": T, "request_id": "c", "entity.flight": 2, "entity.origin": "EWR"},
            {"time": T, "request_id": "d", "entity.flight": 3, "entity.origin": "LGA"},
            {"time": T, "request_id": "e", "entity.flight": 7.0, "entity.origin": "LGA"},
        ]
    )
    labels = _labels(
        [
            {"entities": {"flight": 1, "origin": "JFK"}, "event_time": _at(0), "label": 1},
            {"entities": {"flight": 2, "origin": "JFK"}, "event_time": _at(0), "label": 1},
            {"entities": {"flight": 3}, "event_time": _at(0), "label": 0},
            {"entities": {"flight": 3, "gate": "A1"}, "event_time": _at(0), "label": 1},
            {"entities": {"flight": "7"}, "event_time": _at(0), "label": 1},
        ]
    )
    # a: both keys at the same µs; b: one µs later; c: origin differs; d: its one key
    # (the label naming a key the records lack answers nothing); e: 7.0 is "7".
    assert _latest(labels, predictions) == {("a", 0): 1.0, ("d", 0): 0.0, ("e", 0): 1.0}
    assert _latest(labels, None) == {}  # without the prediction log: request ids only


def test_a_row_label_beats_a_request_label_and_the_latest_wins_among_row_labels() -> None:
    predictions = _predictions(
        [{"time": T, "request_id": r, "row": i, "entity.flight": 10 * ord(r) + i}
         for r in "abc" for i in range(2)]
    )  # fmt: skip
    ent = {"event_time": _at(0)}
    labels = _labels(
        [
            # a: an entity label (a row's) beats the whole-request label, sent before or after
            {"request_id": "a", "label": 0},
            {"entities": {"flight": 970}, **ent, "label": 1},
            {"entities": {"flight": 971}, **ent, "label": 1},
            {"request_id": "a", "label": 0},
            # b: among a row's labels, the latest in log order wins, whichever way sent
            {"request_id": "b", "row": 0, "label": 0},
            {"entities": {"flight": 980}, **ent, "label": 1},
            {"entities": {"flight": 981}, **ent, "label": 1},
            {"request_id": "b", "row": 1, "label": 0},
            # c: an entity label answering nothing leaves the request label alone
            {"request_id": "c", "label": 1},
            {"entities": {"flight": 990}, "event_time": _at(5), "label": 0},
        ]
    )
    found = _latest(labels, predictions)
    assert found == {
        ("a", None): 0.0, ("a", 0): 1.0, ("a", 1): 1.0,
        ("b", 0): 1.0, ("b", 1): 0.0,
        ("c", None): 1.0,
    }  # fmt: skip


def test_request_id_labels_read_as_before_when_the_log_also_holds_entity_labels() -> None:
    predictions = _predictions([{"time": T, "request_id": "a", "entity.flight": 1}])
    labels = _labels(
        [
            {"request_id": "a", "label": 1},
            {"request_id": "a", "label": 0},
            {"request_id": "z", "row": 3, "label": "true"},
            {"entities": {"flight": 2}, "event_time": _at(0), "label": 1},
        ]
    )
    expected = {("a", None): 0.0, ("z", 3): 1.0}
    assert _latest(labels, predictions) == expected
    assert _latest(labels, None) == expected


# --- the monitor, end to end -------------------------------------------------------------

DAY = datetime(2013, 2, 1, tzinfo=UTC)
ROWS = 240


def _serve_day(project: Project, model: str, table: pa.Table) -> pd.DataFrame:
    """Log ``ROWS`` predictions of endpoint ``flights`` over ``DAY``, each naming its
    flight and origin; return them with their request id, time and label."""
    rng = np.random.default_rng(11)
    frame = table.to_pandas().iloc[rng.integers(0, table.num_rows, ROWS)].reset_index(drop=True)
    loaded = project.registry.load(model)
    inputs = loaded.signature.columns
    scores = np.asarray(loaded.predict(frame[inputs]), dtype=np.float64)
    clock = SimulatedClock(DAY)
    log = PredictionLog(project.logs, clock=clock, flush_rows=10_000, flush_interval_s=60)
    records = frame[inputs].to_dict("records")
    frame["request_id"] = [f"req-{i}" for i in range(ROWS)]
    frame["flight"] = np.arange(ROWS) % 60  # a flight is predicted several times a day
    frame["time"] = [DAY + timedelta(seconds=300 * i, microseconds=i) for i in range(ROWS)]
    try:
        for i in range(ROWS):
            clock.set(frame.at[i, "time"])
            prediction = Prediction(
                frame.at[i, "request_id"], "flights", "champion", model, scores[i : i + 1], "ok"
            )
            entities = {"flight": [int(frame.at[i, "flight"])], "origin": [frame.at[i, "origin"]]}
            log.record(prediction, frame.iloc[i : i + 1], rows=[records[i]], unit="u",
                       latency_ms=2.0, entities=entities)  # fmt: skip
    finally:
        log.close()
    return frame


def _send_labels(project: Project, frame: pd.DataFrame, *, by_entity: bool, at: datetime) -> None:
    """Send ``frame``'s labels as feedback at ``at``: by request id or by entities and
    the prediction's time."""
    items = []
    for row in frame.itertuples():
        item: dict[str, Any] = {"endpoint": "flights", "label": bool(row.late),
                                "time": (row.time + timedelta(hours=3)).isoformat()}  # fmt: skip
        if by_entity:
            item["entities"] = {"flight": int(row.flight), "origin": str(row.origin)}
            item["event_time"] = row.time.isoformat()
        else:
            item["request_id"] = row.request_id
        items.append(item)
    log = PredictionLog(project.logs, clock=SimulatedClock(at))
    try:
        log.record_labels(parse_feedback({"items": items}, now=at))
    finally:
        log.close()


def _label_results(reports: Sequence[Any]) -> dict[tuple[str, str, str], Any]:
    """The delayed-label results of one window's report."""
    (report,) = reports
    return {
        (r.check, r.metric, r.column): r.value
        for r in report.results
        if r.check in ("performance", "label", "segment")
    }


def test_labels_by_entity_and_event_time_give_the_realized_metrics_of_labels_by_request_id(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    _, model, table = trained
    passes: dict[bool, list[dict[tuple[str, str, str], Any]]] = {}
    for by_entity in (False, True):
        root = monitored_copy(tmp_path / f"by_entity_{by_entity}", 'label_horizon = "3d"\n')
        with Project.open(root, clock=SimulatedClock(DAY)) as project:
            frame = _serve_day(project, model, table)
        labelled = frame.sample(frac=0.7, random_state=5).sort_values("time")
        first, rest = labelled.iloc[:100], labelled.iloc[100:]
        at = DAY + timedelta(days=1, hours=1)
        with Project.open(root, clock=SimulatedClock(at)) as project:
            _send_labels(project, first, by_entity=by_entity, at=at)
            computed = project.monitor.run().computed
            _send_labels(project, rest, by_entity=by_entity, at=at)
            refreshed = project.monitor.run().refreshed
        passes[by_entity] = [_label_results(computed), _label_results(refreshed)]
    by_request, by_entity_ = passes[False], passes[True]
    coverage = ("performance", "label_coverage", "")
    assert [p[coverage] for p in by_request] == [pytest.approx(100 / ROWS),
                                                 pytest.approx(len(labelled) / ROWS)]  # fmt: skip
    assert ("performance", "roc_auc", "") in by_request[1]
    for request_pass, entity_pass in zip(by_request, by_entity_, strict=True):
        assert entity_pass.keys() == request_pass.keys()
        for key, value in request_pass.items():
            assert entity_pass[key] == pytest.approx(value, nan_ok=True), key
