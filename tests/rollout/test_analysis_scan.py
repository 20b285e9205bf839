"""The analysis scans a local log's Parquet files with DuckDB where it can, and reads
through the store otherwise: both give the same analysis — label priority across files
written out of time order, time windows, type drift, unreadable files."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.rollout.test_analysis import T0, TWO, E, Scenario, Shadow, logged, simulate, write

from prodml.core import SimulatedClock
from prodml.rollout import Guardrail
from prodml.rollout import _analysis_data as data
from prodml.rollout._analysis import analyze_experiment
from prodml.storage import open_log_stores
from prodml.storage._log_format import LABELS_DIR, PREDICTIONS_DIR

GUARDRAILS = [Guardrail("error_rate", 0.01), Guardrail("p99_latency_ms", 0.2, relative=True)]


def _through_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "scan_sources", lambda *a, **k: None)


def both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[dict, dict]:
    logs = open_log_stores(tmp_path)
    scanned = analyze_experiment(logs, E, guardrails=GUARDRAILS, **kwargs).to_dict()
    with monkeypatch.context() as patch:
        _through_store(patch)
        read = analyze_experiment(logs, E, guardrails=GUARDRAILS, **kwargs).to_dict()
    return scanned, read


def scans(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record whether each analysis from now on scanned the files."""
    seen: list[bool] = []
    original = data._collect

    def spy(con: Any, sources: Any, *args: Any) -> Any:
        seen.append(sources.scanned)
        return original(con, sources, *args)

    monkeypatch.setattr(data, "_collect", spy)
    return seen


def test_a_scan_and_a_store_read_give_the_same_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    s = simulate(Scenario(TWO, n=900, multirow=True, relabel=True, rewards=True,
                          propensity=True, shadow=Shadow("s", "champion", 0.35),
                          label_share=0.8))  # fmt: skip
    # Whole-request labels (floats) that row labels (booleans here) override: as numbers
    # in every file, so that the scan reads them.
    labels = [dict(label, label=float(label["label"])) for label in s.labels]
    write(open_log_stores(tmp_path), Scenario(TWO, records=s.records, labels=labels))
    seen = scans(monkeypatch)
    scanned, read = both(tmp_path, monkeypatch, segment_by="feature.origin")
    assert seen == [True, False]
    assert scanned == read
    assert scanned["paired"]
    assert scanned["segments"]


def test_windows_give_the_same_records_either_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    logged(tmp_path, Scenario(TWO, n=600, relabel=True))
    start, end = T0 + timedelta(hours=7, minutes=13), T0 + timedelta(hours=40, seconds=1)
    scanned, read = both(tmp_path, monkeypatch, start=start, end=end, srm_start=start,
                         expected_weights={"champion": 0.5, "challenger": 0.5})  # fmt: skip
    assert scanned == read
    assert scanned["start"] >= start.isoformat()
    assert scanned["end"] < end.isoformat()


def test_the_latest_label_is_by_time_even_when_files_are_out_of_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Two writers in one hour: the file listed second holds the earlier label of a
    request; the later label (in the first file) answers it."""
    s = simulate(Scenario(TWO, n=200))
    logs = write(open_log_stores(tmp_path), Scenario(TWO, records=s.records))
    first = [dict(label, label=not label["label"]) for label in s.labels]  # wrong, earlier
    late = [dict(label, time=label["time"] + timedelta(minutes=1)) for label in s.labels]
    hour_clock = SimulatedClock(T0 + timedelta(hours=1))
    for batch in (late, first):  # the later labels are written (and listed) first
        with logs.labels.open_writer(clock=hour_clock) as writer:
            writer.extend(batch)
    files = logs.labels.files(endpoint=E)
    assert files is not None
    assert len(files.paths) >= 2
    scanned, read = both(tmp_path, monkeypatch)
    assert scanned == read
    memory = write(open_log_stores(tmp_path, "memory"), Scenario(TWO, records=s.records,
                                                                  labels=s.labels))  # fmt: skip
    right = analyze_experiment(memory, E, guardrails=GUARDRAILS).to_dict()
    assert scanned["arms"] == right["arms"]


def test_labels_stored_as_text_are_read_through_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    s = simulate(Scenario(TWO, n=300))
    texts = [dict(label, label="true" if label["label"] else "false") for label in s.labels]
    write(open_log_stores(tmp_path), Scenario(TWO, records=s.records, labels=texts))
    seen = scans(monkeypatch)
    scanned, read = both(tmp_path, monkeypatch)
    assert seen == [False, False]
    assert scanned == read
    assert scanned["arms"][0]["labelled"] > 0


def test_an_unreadable_file_falls_back_to_the_store_which_quarantines_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    logged(tmp_path, Scenario(TWO, n=400))
    files = sorted((tmp_path / PREDICTIONS_DIR).rglob("*.parquet"))
    # A file whose footer reads but whose pages do not: the scan starts, then fails.
    raw = files[3].read_bytes()
    files[3].write_bytes(raw[:4] + b"\xff" * 64 + raw[68:])
    moved: list[Any] = []
    seen = scans(monkeypatch)
    with caplog.at_level(logging.WARNING, "prodml.rollout"):
        result = analyze_experiment(open_log_stores(tmp_path), E, quarantine=moved)
    assert [m.source for m in moved] == [files[3]]
    assert not files[3].exists()
    assert seen[-1] is False
    assert "reading them through the store" in caplog.text
    assert sum(a.records for a in result.arms) < 400


def test_a_label_log_without_files_in_range_scans_predictions_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    s = simulate(Scenario(TWO, n=120))
    write(open_log_stores(tmp_path), Scenario(TWO, records=s.records))
    assert not (tmp_path / LABELS_DIR).exists()
    seen = scans(monkeypatch)
    scanned, read = both(tmp_path, monkeypatch)
    assert seen == [True, False]
    assert scanned == read
    assert all(arm["labelled"] == 0 for arm in scanned["arms"])
