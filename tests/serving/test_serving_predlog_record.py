"""PredictionLog writes records of the one PredictionRecord definition, live and shadow,
through the project's log stores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prodml import Project
from prodml.core import ConfigError, SimulatedClock
from prodml.serving._feedback import parse_feedback
from prodml.serving._prediction import Prediction
from prodml.serving._predlog import PredictionLog
from prodml.serving._shadow import ShadowCall
from prodml.storage import (
    LABEL_SCHEMA,
    PREDICTION_SCHEMA,
    LocalLogStore,
    LogStores,
    MemoryLogStore,
    entity_column,
    feature_age_column,
    feature_column,
    feature_stale_column,
    open_log_stores,
)

T0 = datetime(2013, 1, 1, 5, tzinfo=UTC)


class _Sink:
    def set_result(self, value: Any) -> None: ...


@pytest.fixture(params=["local", "memory"])
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> LogStores:
    return open_log_stores(tmp_path, request.param)


def _log(logs: LogStores) -> PredictionLog:
    return PredictionLog(logs, clock=SimulatedClock(T0), flush_interval_s=3600)


def test_live_and_shadow_records_hold_the_fixed_fields_in_order(logs: LogStores) -> None:
    log = _log(logs)
    frame = pd.DataFrame({"distance": [100.0, 250.0], "carrier": ["AA", "UA"]})
    live = Prediction(
        "r1", "e", "champion", "m:1", np.array([0.25, 0.75]), "ok", 0.5,
        role="champion", stratum="JFK",
    )  # fmt: skip
    log.record(
        live, frame, unit="u1", latency_ms=2.0, protocol="mlflow",
        entities={"origin": ["JFK", "EWR"]}, feature_versions={"flights": "3"},
        freshness={"flights": ([1.5, None], [False, True])},
    )  # fmt: skip
    log.record_shadows(
        endpoint="e", arm="challenger", model="m:2",
        calls=[ShadowCall(frame, "r1", "u1", 0.0, _Sink(), "champion")],  # type: ignore[arg-type]
        outputs=[np.array([0.5, 0.5])], errors=[None], ended=0.004,
    )  # fmt: skip
    log.close()
    table = logs.predictions.read()
    fixed = PREDICTION_SCHEMA.names
    assert table.column_names[: len(fixed)] == fixed
    extra = [
        entity_column("origin"), feature_column("distance"), feature_column("carrier"),
        feature_age_column("flights"), feature_stale_column("flights"),
    ]  # fmt: skip
    assert table.column_names[len(fixed) :] == extra
    for field in PREDICTION_SCHEMA:  # a column no record gave a value is null-typed
        if table[field.name].null_count < table.num_rows:
            assert table.schema.field(field.name).type == field.type, field.name
    assert {f.name for f in table.schema if f.type == pa.null()} == {
        "fallback_from", "error", "violations",
    }  # fmt: skip
    rows = table.to_pylist()
    assert [(r["shadow"], r["arm"], r["row"], r["output"]) for r in rows] == [
        (False, "champion", 0, 0.25), (False, "champion", 1, 0.75),
        (True, "challenger", 0, 0.5), (True, "challenger", 1, 0.5),
    ]  # fmt: skip
    assert [(r["role"], r["stratum"], r["shadow_of"]) for r in rows] == [
        ("champion", "JFK", None), ("champion", "JFK", None),
        ("shadow", None, "champion"), ("shadow", None, "champion"),
    ]  # fmt: skip
    assert rows[0]["feature_versions"] == '{"flights":"3"}'
    assert [r["feature.distance"] for r in rows] == [100.0, 250.0, None, None]
    assert [r["feature_stale.flights"] for r in rows] == [False, True, None, None]
    assert rows[2]["latency_ms"] == pytest.approx(4.0)
    assert (rows[2]["propensity"], rows[2]["protocol"]) == (None, None)


def test_logged_request_ids_reads_through_the_store(logs: LogStores) -> None:
    log = _log(logs)
    prediction = Prediction("r1", "e", "champion", "m:1", np.array([0.5]), "ok")
    log.record(prediction, pd.DataFrame({"x": [1.0]}), unit="u", latency_ms=1.0)
    assert log.logged_request_ids("e", ["r1", "r2"], since=T0) == set()  # still queued
    log.predictions.flush()
    assert log.logged_request_ids("e", ["r1", "r2"], since=T0) == {"r1"}
    assert log.logged_request_ids("other", ["r1"], since=T0) == set()
    log.close()


def test_labels_go_to_the_label_store() -> None:
    logs = LogStores(MemoryLogStore("predictions"), MemoryLogStore("labels"))
    log = _log(logs)
    record = {"time": T0, "endpoint": "e", "request_id": "r1", "label": 1.0}
    assert log.record_labels([record]) == 1
    log.close()
    assert logs.labels.read()["request_id"].to_pylist() == ["r1"]
    assert logs.predictions.endpoints() == []
    assert log.stats["labels"].written_rows == 1


def test_feedback_records_hold_the_label_fields_in_order() -> None:
    items = [{"endpoint": "e", "request_id": "r1", "label": 1}]
    (record,) = parse_feedback({"items": items}, now=T0)
    assert list(record) == [name for name in LABEL_SCHEMA.names if name != "row"]


def test_a_project_opens_its_logs_from_the_config(tmp_path: Path) -> None:
    with Project.init(tmp_path / "p") as project:
        assert isinstance(project.logs.predictions, LocalLogStore)
        assert project.logs is project.logs
        assert project.logs.labels.root == project.state_dir / "logs" / "labels"
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "prodml.toml").write_text('[logs]\ntype = "memory"\n')
    with Project.open(tmp_path / "q") as project:
        assert isinstance(project.logs.labels, MemoryLogStore)
    (tmp_path / "q" / "prodml.toml").write_text('[logs]\ntype = "cloud"\n')
    with (
        Project.open(tmp_path / "q") as project,
        pytest.raises(
            ConfigError, match="log store 'cloud' is unknown: expected one of 'local', 'memory'"
        ),
    ):
        _ = project.logs
