"""Hostile inputs to a monitoring pass: labels a classifier cannot have, scores that are
not probabilities, windows whose every score is missing, and stored references that are
readable archives of the wrong shape. Each costs the results it touches (reported as
``error`` with the reason), never the pass, and never a NaN reported as ``ok``."""

from __future__ import annotations

import io
import json
import socket
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.core import SimulatedClock
from prodml.core._monitor_metrics import CLASSIFICATION_METRICS, ESTIMATED_METRICS
from prodml.storage import feature_column

DAY0 = datetime(2013, 2, 1, tzinfo=UTC)
ROWS = 120

Scores = Callable[[np.ndarray], np.ndarray]
Labels = Callable[[int, bool], Any]


def _as_scored(scores: np.ndarray) -> np.ndarray:
    return scores


def _as_labelled(i: int, late: bool) -> Any:
    return late


def _write_day(
    project: Project,
    model: str,
    table: pa.Table,
    day: datetime,
    *,
    endpoint: str = "flights",
    scores: Scores = _as_scored,
    label: Labels = _as_labelled,
) -> None:
    """``ROWS`` live predictions of ``model`` over ``day`` (their scores passed through
    ``scores``) and a label for each (``label(i, late)``)."""
    rng = np.random.default_rng(day.day)
    frame = table.to_pandas().iloc[rng.integers(0, table.num_rows, ROWS)].reset_index(drop=True)
    loaded = project.registry.load(model)
    inputs = loaded.signature.columns
    logged = scores(np.asarray(loaded.predict(frame[inputs]), dtype=np.float64))
    with (
        project.logs.predictions.open_writer(clock=project.clock) as predictions,
        project.logs.labels.open_writer(clock=project.clock) as labels,
    ):
        for i in range(ROWS):
            at = day + timedelta(seconds=i * 700)
            record: dict[str, Any] = {
                "time": at, "endpoint": endpoint, "request_id": f"{endpoint}-{day:%d}-{i}",
                "row": 0, "arm": "champion", "model_version": model, "shadow": False,
                "status": "ok", "output": float(logged[i]),
            }  # fmt: skip
            record.update({feature_column(n): frame.at[i, n] for n in inputs})
            predictions.append(record)
            labels.append({"time": at + timedelta(minutes=1), "endpoint": endpoint,
                           "request_id": f"{endpoint}-{day:%d}-{i}", "row": 0,
                           "label": label(i, bool(frame.at[i, "late"]))})  # fmt: skip


def _open(root: Path, at: datetime) -> Project:
    return Project.open(root, clock=SimulatedClock(at))


def _results(report: Any) -> dict[tuple[str, str, str], Any]:
    return {(r.check, r.metric, r.column): r for r in report.results}


@pytest.mark.parametrize("bad", [2, -1, "7"])
def test_labels_that_are_not_0_or_1_are_an_error_result_not_a_failed_pass(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    bad: Any,
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _write_day(project, model, table, DAY0, endpoint="flights",
                   label=lambda i, late: bad if i % 10 == 0 else late)  # fmt: skip
        _write_day(project, model, table, DAY0, endpoint="clean")
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        outcome = project.monitor.run()
    by_endpoint = {w.window.endpoint: _results(w) for w in outcome.computed}
    assert set(by_endpoint) == {"clean", "flights"}  # one bad label log costs no endpoint
    found = by_endpoint["flights"]
    assert found[("performance", "label_coverage", "")].value == 1.0
    for name in (*CLASSIFICATION_METRICS, "ece"):
        result = found[("performance", name, "")]
        assert (result.value, result.status) == (None, "error"), name
        assert "0 or 1" in result.details["reason"]
    assert found[("label", "label_rate", "")].status == "error"
    assert found[("drift", "share", "")].value is not None  # the rest of the window stands
    clean = by_endpoint["clean"]
    assert clean[("performance", "roc_auc", "")].status == "ok"
    assert clean[("performance", "roc_auc", "")].value is not None


def test_a_refresh_meeting_labels_that_are_not_0_or_1_reports_them(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p", 'label_horizon = "3d"\n')
    _, model, table = trained
    with _open(root, DAY0) as project:
        _write_day(project, model, table, DAY0, label=lambda i, late: None if i == 3 else late)
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        (window,) = project.monitor.run().computed
        assert _results(window)[("performance", "roc_auc", "")].status == "ok"
        with project.logs.labels.open_writer(clock=project.clock) as labels:
            labels.append({"time": DAY0 + timedelta(days=1), "endpoint": "flights",
                           "request_id": "flights-01-3", "row": 0, "label": 5})  # fmt: skip
    with _open(root, DAY0 + timedelta(days=1, hours=2)) as project:
        outcome = project.monitor.run()
    (refreshed,) = outcome.refreshed
    assert _results(refreshed)[("performance", "roc_auc", "")].status == "error"


def test_classifier_scores_outside_0_1_are_an_error_result_not_a_failed_pass(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _write_day(project, model, table, DAY0, scores=lambda s: s * 5 - 2)
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        (window,) = project.monitor.run().computed
    found = _results(window)
    for check, names in (("performance", CLASSIFICATION_METRICS), ("estimated", ESTIMATED_METRICS)):
        for name in names:
            result = found[(check, name, "")]
            assert (result.value, result.status) == (None, "error"), (check, name)
            assert "[0, 1]" in result.details["reason"]


def test_a_calibration_window_with_labels_that_are_not_0_or_1_does_not_fail_the_next(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p", 'calibration = "recent"\n')
    _, model, table = trained
    with _open(root, DAY0) as project:
        _write_day(project, model, table, DAY0, label=lambda i, late: 3 if i == 0 else late)
        _write_day(project, model, table, DAY0 + timedelta(days=1))
    with _open(root, DAY0 + timedelta(days=2, minutes=10)) as project:
        first, second = project.monitor.run().computed
    assert _results(first)[("performance", "roc_auc", "")].status == "error"
    estimated = _results(second)[("estimated", "roc_auc", "")]
    assert estimated.value is not None
    assert estimated.details["calibration"] == "reference"


def test_labelled_records_whose_scores_are_all_missing_report_no_label_rate(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _write_day(project, model, table, DAY0, scores=lambda s: np.full_like(s, np.nan))
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        (window,) = project.monitor.run().computed  # no "mean of empty slice" warning
    rate = _results(window)[("label", "label_rate", "")]
    assert rate.value is None
    listed = _cli("monitor", "windows", "--json", "--project", str(root))
    assert listed.exit_code == 0, listed.output
    json.loads(listed.output, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output"))


def _zip(entries: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


_EMPTY_DRIFT = _zip({"manifest.json": json.dumps({"rows": 3, "numeric": [], "categorical": []})})


@pytest.mark.parametrize(
    "archive",
    [
        _zip({"drift.zip": _EMPTY_DRIFT, "meta.json": "[1, 2]"}),
        _zip({"drift.zip": _EMPTY_DRIFT, "meta.json": json.dumps({"inputs": 5})}),
        _zip(
            {
                "drift.zip": _zip(
                    {
                        "manifest.json": json.dumps(
                            {"rows": 3, "numeric": [], "categorical": ["origin"]}
                        ),
                        "categorical/0.json": "[1, 2]",
                    }
                ),
                "meta.json": "{}",
            }
        ),
    ],
    ids=["meta-not-an-object", "inputs-not-a-list", "profile-not-an-object"],
)
def test_a_stored_reference_of_the_wrong_shape_is_an_error_result(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    archive: bytes,
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _write_day(project, model, table, DAY0)
        digest = project.artifacts.put_bytes(archive)
        project.monitor.store.save_reference(model, digest, {}, DAY0)
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        (window,) = project.monitor.run().computed
    result = _results(window)[("reference", "available", "")]
    assert result.status == "error"
    assert "StorageError" in result.details["reason"]


def _write_records(project: Project, endpoint: str, **fields: Any) -> None:
    """``ROWS`` prediction records over ``DAY0`` on ``endpoint`` with ``fields``."""
    with project.logs.predictions.open_writer(clock=project.clock) as predictions:
        for i in range(ROWS):
            predictions.append({"time": DAY0 + timedelta(seconds=i * 700), "endpoint": endpoint,
                                "request_id": f"{endpoint}-{i}", "row": 0, "shadow": False,
                                **fields})  # fmt: skip


@pytest.mark.parametrize("model_version", [None, "", "flight_delay:abc", "a/b:1"])
def test_records_without_a_valid_model_version_are_a_reference_error_not_a_failed_pass(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    model_version: str | None,
) -> None:
    """Records answered by a deployment's default response log no model version."""
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _write_records(project, "degraded", arm="default", model_version=model_version,
                       status="degraded", output=0.0)  # fmt: skip
        _write_day(project, model, table, DAY0, endpoint="flights")
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        outcome = project.monitor.run()
        again = project.monitor.run()
    by_endpoint = {w.window.endpoint: _results(w) for w in outcome.computed}
    assert set(by_endpoint) == {"degraded", "flights"}
    degraded = by_endpoint["degraded"]
    assert degraded[("operational", "rows", "")].value == ROWS
    available = degraded[("reference", "available", "")]
    assert available.status == "error"
    assert "model" in available.details["reason"]
    assert ("reference", "available", "") not in by_endpoint["flights"]
    assert again.computed == []
    assert again.refreshed == []


def _cli(*args: str) -> Any:
    return CliRunner(env={"COLUMNS": "400"}).invoke(app, list(args))  # usage errors on one line


@pytest.mark.parametrize(
    "options",
    [
        ["--passes", "0"],
        ["--passes", "-1"],
        ["--passes", "1", "--interval", "-5"],
        ["--passes", "1", "--interval", "nan"],
        ["--passes", "2", "--interval", "inf"],
        ["--passes", "1", "--metrics-port", "99999"],
        ["--passes", "1", "--metrics-port", "-3"],
    ],
)
def test_monitor_watch_refuses_bad_options_with_a_usage_error(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    options: list[str],
) -> None:
    root = monitored_copy(tmp_path / "p")
    result = _cli("monitor", "watch", "--project", str(root), *options)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output


def test_monitor_watch_on_a_taken_metrics_port_is_a_usage_error(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("monitor", "watch", "--project", str(root), "--passes", "1",
                      "--metrics-port", str(port))  # fmt: skip
    assert result.exit_code == 2, (result.output, result.exception)
    assert "--metrics-port" in result.output


def test_monitor_report_to_a_directory_or_an_unwritable_path_is_a_clear_error(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    into_dir = _cli("monitor", "report", "--project", str(root), "-o", str(tmp_path))
    assert into_dir.exit_code == 2, (into_dir.output, into_dir.exception)
    assert "is a directory" in into_dir.output
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    below_file = _cli("monitor", "report", "--project", str(root), "--json",
                      "-o", str(blocker / "report.html"))  # fmt: skip
    assert below_file.exit_code not in (0, 1), (below_file.output, below_file.exception)
    error = json.loads(below_file.output)
    assert error["type"] == "StorageError"
    assert "--output" in error["error"]
    assert blocker.read_text() == "not a directory"
