"""What a monitoring pass reads: the logs only through their log store (a pass over an
in-memory store gives the results of one over Parquet files), each model version loaded
once and a reference window's log read once however many endpoints ask; a reference that
cannot be had is an error result and a warning while the rest of the window is computed;
any other error is raised."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from prodml import Project
from prodml.core import SimulatedClock
from prodml.core.errors import TrainingError
from prodml.monitoring._fitting import ReferenceFitter
from prodml.registry import LoadedModel
from prodml.storage import LogStores, MemoryLogStore, feature_column

DAY0 = datetime(2013, 2, 1, tzinfo=UTC)
ROWS = 120
HALF_DAY = (DAY0, DAY0 + timedelta(hours=12))


def _write_day(
    project: Project, logs: LogStores, model: str, table: pa.Table, endpoints: list[str], seed: int
) -> None:
    """``ROWS`` live predictions of ``model`` over ``DAY0`` on each endpoint, and a
    label for every other one."""
    rng = np.random.default_rng(seed)
    frame = table.to_pandas().iloc[rng.integers(0, table.num_rows, ROWS)].reset_index(drop=True)
    loaded = project.registry.load(model)
    inputs = loaded.signature.columns
    scores = np.asarray(loaded.predict(frame[inputs]), dtype=np.float64)
    with (
        logs.predictions.open_writer(clock=project.clock) as predictions,
        logs.labels.open_writer(clock=project.clock) as labels,
    ):
        for endpoint in endpoints:
            for i in range(ROWS):
                at = DAY0 + timedelta(seconds=i * 700)
                record: dict[str, Any] = {
                    "time": at, "endpoint": endpoint, "request_id": f"{endpoint}-{i}", "row": 0,
                    "arm": "champion", "model_version": model, "shadow": False, "status": "ok",
                    "output": float(scores[i]),
                }  # fmt: skip
                record.update({feature_column(n): frame.at[i, n] for n in inputs})
                predictions.append(record)
                if i % 2 == 0:
                    labels.append({"time": at + timedelta(minutes=1), "endpoint": endpoint,
                                   "request_id": f"{endpoint}-{i}", "row": 0,
                                   "label": bool(frame.at[i, "late"])})  # fmt: skip


def _log_day(root: Path, model: str, table: pa.Table, endpoints: list[str], seed: int) -> None:
    with Project.open(root, clock=SimulatedClock(DAY0)) as project:
        _write_day(project, project.logs, model, table, endpoints, seed)


def _open(root: Path) -> Project:
    return Project.open(root, clock=SimulatedClock(DAY0 + timedelta(days=1, minutes=10)))


def test_a_pass_over_an_in_memory_log_store_gives_the_results_of_one_over_files(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p", 'label_horizon = "1h"\n')
    _, model, table = trained
    _log_day(root, model, table, ["flights"], seed=5)
    with _open(root) as project:
        on_files = project.monitor.run()
    other = monitored_copy(tmp_path / "q", 'label_horizon = "1h"\n')
    with _open(other) as project:
        memory = LogStores(MemoryLogStore("predictions"), MemoryLogStore("labels"))
        _write_day(project, memory, model, table, ["flights"], seed=5)
        project.logs = memory  # the store the project's monitor reads
        in_memory = project.monitor.run()
    assert [w.window.rows for w in in_memory.computed] == [ROWS]
    assert in_memory.quarantined == on_files.quarantined == []

    def results(run: Any) -> list[tuple[Any, ...]]:
        return [(r.check, r.metric, r.column, r.value, r.status)
                for w in run.computed for r in w.results]  # fmt: skip

    assert results(in_memory) == results(on_files)
    assert ("performance", "label_coverage", "", 0.5, "ok") in results(in_memory)


def test_a_pass_loads_each_model_version_once_and_reads_the_reference_window_once(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = 'reference = "2013-02-01T00:00/2013-02-01T12:00"\nimportance_weighted = true\n'
    root = monitored_copy(tmp_path / "p", window)
    _, model, table = trained
    _log_day(root, model, table, ["flights", "trains"], seed=1)
    with _open(root) as project:
        loads: list[str] = []
        load = project.registry.load

        def counting_load(ref: str) -> LoadedModel:
            loads.append(ref)
            return load(ref)

        monkeypatch.setattr(project.registry, "load", counting_load)
        spans: list[tuple[str | None, Any, Any]] = []
        predictions = project.logs.predictions
        read = predictions.read

        def counting_read(**kwargs: Any) -> pa.Table:
            spans.append((kwargs.get("endpoint"), kwargs.get("start"), kwargs.get("end")))
            return read(**kwargs)

        monkeypatch.setattr(predictions, "read", counting_read)
        outcome = project.monitor.run()
        assert [w.window.endpoint for w in outcome.computed] == ["flights", "trains"]
        assert loads == [model]  # one model version, two references (one per endpoint)
        for endpoint in ("flights", "trains"):
            assert spans.count((endpoint, *HALF_DAY)) == 1
            reference = project.monitor.reference(model, endpoint)
            assert reference.meta["source"]["window_rows"] == 62  # 00:00 up to 12:00
            assert sum(reference.meta["importance"].values()) == pytest.approx(1.0)
        for report in outcome.computed:
            assert {(r.check, r.metric) for r in report.results} >= {("drift", "share")}


def test_a_missing_reference_is_an_error_result_and_a_warning(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    empty_window = 'reference = "2013-01-01/2013-01-02"\nlabel_horizon = "3d"\n'
    root = monitored_copy(tmp_path / "p", empty_window)
    _, model, table = trained
    _log_day(root, model, table, ["flights"], seed=2)
    with caplog.at_level(logging.WARNING, logger="prodml.monitoring"), _open(root) as project:
        (report,) = project.monitor.run().computed
    found = {(r.check, r.metric): r for r in report.results}
    available = found[("reference", "available")]
    assert available.status == "error"
    assert available.details is not None
    assert available.details["reason"].startswith("NotFoundError: monitoring reference window")
    assert found[("operational", "rows")].value == ROWS  # the rest is computed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no reference for" in m for m in warnings)
    # The window awaits labels: its refresh says why it cannot recompute them.
    assert any("labels not refreshed" in m for m in warnings)


def test_a_model_that_fails_on_its_test_split_is_a_reference_error(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    _log_day(root, model, table, ["flights"], seed=3)

    def broken(self: LoadedModel, X: Any) -> np.ndarray:
        raise ValueError("cannot score")

    monkeypatch.setattr(LoadedModel, "predict", broken)
    with _open(root) as project:
        (report,) = project.monitor.run().computed
        with pytest.raises(TrainingError, match=r"could not score .* \(ValueError: cannot score\)"):
            project.monitor.fit_reference(model)
    available = {(r.check, r.metric): r for r in report.results}[("reference", "available")]
    assert available.details is not None
    assert available.details["reason"].startswith(f"TrainingError: model version {model}")


def test_an_unexpected_error_while_fitting_a_reference_is_raised(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    _log_day(root, model, table, ["flights"], seed=4)

    def bug(self: ReferenceFitter, model_version: str) -> Any:
        raise RuntimeError("a bug, not a missing reference")

    monkeypatch.setattr(ReferenceFitter, "fit", bug)
    with _open(root) as project, pytest.raises(RuntimeError, match="a bug"):
        project.monitor.run()
