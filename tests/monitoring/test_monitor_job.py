"""The monitoring pass end to end: a trained model version, a prediction log and a
label log written by the server's own log writer, daily windows, stored results, label
refreshes, alerts through a real webhook, and the CLI."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from prodml import Project
from prodml.cli import app
from prodml.core import SimulatedClock
from prodml.monitoring import MONITOR_METRICS, Window, classification_metrics
from prodml.serving import Prediction, PredictionLog

DAY0 = datetime(2013, 2, 1, tzinfo=UTC)
ROWS = 300


def _log_day(
    project: Project,
    model: str,
    table: pa.Table,
    day: datetime,
    *,
    seed: int,
    shift: float = 0.0,
    labels: float = 1.0,
    rows: int = ROWS,
    arm: str = "champion",
    stale_every: int = 0,
) -> pd.DataFrame:
    """Log ``rows`` predictions spread over ``day`` (temp shifted by ``shift``) and labels
    for a ``labels`` share of them; returns what was logged."""
    rng = np.random.default_rng(seed)
    frame = table.to_pandas().iloc[rng.integers(0, table.num_rows, rows)].reset_index(drop=True)
    frame["temp"] = frame["temp"] + shift
    loaded = project.registry.load(model)
    inputs = loaded.signature.columns
    scores = np.asarray(loaded.predict(frame[inputs]), dtype=np.float64)
    clock = SimulatedClock(day)
    log = PredictionLog(project.logs, clock=clock, flush_rows=10_000, flush_interval_s=60)
    records = frame[inputs].to_dict("records")
    frame["request_id"] = [f"{day:%m%d}-{seed}-{i}" for i in range(rows)]
    frame["score"] = scores
    frame["labelled"] = rng.random(rows) < labels
    try:
        for i in range(rows):
            clock.set(day + timedelta(seconds=int(i * 86_000 / rows)))
            prediction = Prediction(
                frame.at[i, "request_id"], "flights", arm, model, scores[i : i + 1], "ok"
            )
            freshness = None
            if stale_every:
                freshness = {"weather": ([float(i)], [i % stale_every == 0])}
            log.record(
                prediction,
                frame.iloc[i : i + 1],
                rows=[records[i]],
                unit="u",
                latency_ms=2.0 + i % 7,
                freshness=freshness,
            )
            if frame.at[i, "labelled"]:
                log.record_label(
                    {
                        "time": day + timedelta(seconds=int(i * 86_000 / rows) + 60),
                        "endpoint": "flights",
                        "request_id": frame.at[i, "request_id"],
                        "row": 0,
                        "label": bool(frame.at[i, "late"]),
                    }
                )
    finally:
        log.close()
    return frame


def _open(root: Path, at: datetime) -> Project:
    return Project.open(root, clock=SimulatedClock(at))


def _results(report: Any) -> dict[tuple[str, str, str], Any]:
    return {(r.check, r.metric, r.column): r for r in report.results}


def _temp_rule(url: str, sink: str, extra: str = "") -> str:
    """A sink of type ``sink`` at ``url`` and a rule on temp's drift statistic."""
    return f"""
[[monitoring.alerts.sinks]]
name = "out"
type = "{sink}"
url = "{url}"

[[monitoring.alerts.rules]]
name = "temp_drift"
metric = "drift.value"
column = "temp"
threshold = 0.5
sinks = ["out"]
{extra}"""


def _daily_drift(
    trained: tuple[Path, str, pa.Table],
    root: Path,
    shifts: list[float],
    seed: int,
    received: list[dict[str, Any]],
) -> list[int]:
    """Log one day per shift, then run a pass after each day closes, as a watch loop
    would; the number of posts ``received`` after each pass."""
    _, model, table = trained
    with _open(root, DAY0) as project:
        for day, shift in enumerate(shifts):
            _log_day(
                project,
                model,
                table,
                DAY0 + timedelta(days=day),
                seed=seed + day,
                shift=shift,
                rows=120,
            )
    counts = []
    for day in range(1, len(shifts) + 1):
        with _open(root, DAY0 + timedelta(days=day, minutes=10)) as project:
            project.monitor.run()
        counts.append(len(received))
    return counts


def test_a_pass_computes_each_closed_window_once_and_flags_the_shifted_day(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        control = _log_day(project, model, table, DAY0, seed=1)
        _log_day(project, model, table, DAY0 + timedelta(days=1), seed=2, shift=20.0)
        _log_day(project, model, table, DAY0 + timedelta(days=3), seed=3, rows=10)
    with _open(root, DAY0 + timedelta(days=4, minutes=10)) as project:
        outcome = project.monitor.run()
        again = project.monitor.run()
    assert [(w.window.start.day, w.window.status) for w in outcome.computed] == [
        (1, "computed"), (2, "computed"), (3, "empty"), (4, "too_few_rows"),
    ]  # fmt: skip
    assert again.computed == []
    assert again.refreshed == []
    day1, day2, _, day4 = (_results(w) for w in outcome.computed)
    assert day1[("drift", "wasserstein", "temp")].status == "ok"
    assert day2[("drift", "wasserstein", "temp")].status == "drift"
    assert day2[("drift", "wasserstein", "temp")].value > 0.5
    assert day1[("drift", "share", "")].value < day2[("drift", "share", "")].value
    assert day4[("drift", "share", "")].status == "too_few_rows"
    assert day1[("operational", "rows", "")].value == ROWS
    assert day1[("operational", "error_rate", "")].value == 0.0
    assert day1[("operational", "latency_p50_ms", "")].value == pytest.approx(5.0)
    # Delayed-label performance equals the metrics of the joined labels.
    expected = classification_metrics(control["late"].astype(float), control["score"])
    assert day1[("performance", "roc_auc", "")].value == pytest.approx(expected["roc_auc"])
    assert day1[("performance", "accuracy", "")].value == pytest.approx(expected["accuracy"])
    assert day1[("performance", "label_coverage", "")].value == 1.0
    assert day1[("estimated", "roc_auc", "")].value is not None
    assert day1[("quality", "missing_rate", "temp")].value == 0.0
    emitted = {f"{r.check}.{r.metric}" for w in outcome.computed for r in w.results}
    assert emitted <= set(MONITOR_METRICS)  # every name a rule may use comes from there


def test_labels_arriving_later_refresh_performance_until_the_horizon(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p", 'label_horizon = "3d"\n')
    _, model, table = trained
    with _open(root, DAY0) as project:
        frame = _log_day(project, model, table, DAY0, seed=4, labels=0.0)
    with _open(root, DAY0 + timedelta(days=1, hours=1)) as project:
        first = project.monitor.run()
    assert _results(first.computed[0])[("performance", "label_coverage", "")].value == 0.0
    assert not first.computed[0].window.labels_final
    with _open(root, DAY0 + timedelta(days=1, hours=3)) as project:
        reads: list[Any] = []
        read = project.monitor._label_records
        project.monitor._label_records = lambda *a: reads.append(a) or read(*a)  # type: ignore[method-assign]
        assert project.monitor.run().refreshed == []
    assert reads == []  # no label yet: the window's records are not read again
    with _open(root, DAY0 + timedelta(days=2)) as project:
        log = PredictionLog(project.logs, clock=project.clock)
        for rid, late in zip(frame["request_id"][:150], frame["late"][:150], strict=True):
            log.record_label({"time": DAY0 + timedelta(days=1, hours=2), "endpoint": "flights",
                              "request_id": rid, "row": 0, "label": bool(late)})  # fmt: skip
        log.close()
        second = project.monitor.run()
    assert len(second.refreshed) == 1
    assert _results(second.refreshed[0])[("performance", "label_coverage", "")].value == 0.5
    with _open(root, DAY0 + timedelta(days=4, hours=1)) as project:
        third = project.monitor.run()
        assert third.refreshed[0].window.labels_final
        assert project.monitor.run().refreshed == []
        stored = project.monitor.store.results([third.refreshed[0].window.id])
    coverage = [r for r in next(iter(stored.values())) if r.metric == "label_coverage"]
    assert [r.value for r in coverage] == [0.5]  # replaced, not duplicated


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: ClassVar[list[dict[str, Any]]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_two_of_three_debounce_fires_once_and_resolves_once_through_a_webhook(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    root = monitored_copy(tmp_path / "p", _temp_rule(url, "webhook", "m_of_n = [2, 3]\n"))
    spike_then_sustained = [20.0, 0, 0, 20.0, 20.0, 20.0, 0, 0]
    _daily_drift(trained, root, spike_then_sustained, 10, received)
    assert [(r["state"], r["window_end"][:10]) for r in received] == [
        ("firing", "2013-02-06"), ("resolved", "2013-02-09"),
    ]  # fmt: skip
    assert received[0]["rule"] == "temp_drift"
    assert "column=temp" in received[0]["scope"]
    with _open(root, DAY0 + timedelta(days=10)) as project:
        events = project.monitor.store.events()
        states = project.monitor.store.alert_states()
    assert [e["state"] for e in events] == ["firing", "resolved"]
    assert [s["state"] for s in states] == ["resolved"]


def test_cli_monitor_run_json_and_windows(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    with _open(root, day) as project:
        _log_day(project, model, table, day, seed=5)
    runner = CliRunner()
    result = runner.invoke(app, ["monitor", "run", "-p", str(root), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [w["rows"] for w in data["computed"]] == [ROWS, 0]  # the logged day, then yesterday
    listed = runner.invoke(app, ["monitor", "windows", "-p", str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [w["id"] for w in json.loads(listed.output)] == [w["id"] for w in data["computed"]]
    human = runner.invoke(app, ["monitor", "windows", "-p", str(root)])
    assert human.exit_code == 0
    assert "flights" in human.output


def test_a_past_window_of_the_log_can_be_the_reference(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p", 'reference = "2013-02-02/2013-02-03"\n')
    _, model, table = trained
    with _open(root, DAY0) as project:
        _log_day(project, model, table, DAY0, seed=21)
        _log_day(project, model, table, DAY0 + timedelta(days=1), seed=22, shift=20.0)
        _log_day(project, model, table, DAY0 + timedelta(days=2), seed=23, shift=20.0)
    with _open(root, DAY0 + timedelta(days=3, minutes=10)) as project:
        outcome = project.monitor.run()
        reference = project.monitor.reference(model, "flights")
    day1, day2, day3 = (_results(w) for w in outcome.computed)
    # Against the shifted day, the normal day is far and the other shifted day close.
    assert day1[("drift", "wasserstein", "temp")].status == "drift"
    assert day2[("drift", "wasserstein", "temp")].value == 0.0
    assert (
        day3[("drift", "wasserstein", "temp")].value
        < day1[("drift", "wasserstein", "temp")].value / 4
    )
    assert reference.meta["source"]["window_rows"] == ROWS
    assert reference.meta["calibrator"]  # calibration still comes from the test split


def test_importance_weighting_uses_permutation_importance_of_the_test_split(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p", "importance_weighted = true\n")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _log_day(project, model, table, DAY0, seed=31, shift=20.0)
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        outcome = project.monitor.run()
        importance = project.monitor.reference(model).meta["importance"]
    assert sum(importance.values()) == pytest.approx(1.0)
    assert max(importance, key=importance.get) == "dep_hour"  # the label depends on the hour
    found = _results(outcome.computed[0])
    drifted = [
        r.column
        for r in outcome.computed[0].results
        if r.check == "drift" and r.status == "drift" and r.column
    ]
    expected = sum(importance[c] for c in drifted)
    assert found[("drift", "share", "")].value == pytest.approx(expected)


def test_count_windows_hold_that_many_live_predictions(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    text = (root / "prodml.toml").read_text().replace('window = "1d"', 'window = "250rows"')
    (root / "prodml.toml").write_text(text)
    _, model, table = trained
    with _open(root, DAY0) as project:
        _log_day(project, model, table, DAY0, seed=41)
        _log_day(project, model, table, DAY0 + timedelta(days=1), seed=42)
    with _open(root, DAY0 + timedelta(days=2, minutes=10)) as project:
        outcome = project.monitor.run()
        assert project.monitor.run().computed == []
    assert [w.window.rows for w in outcome.computed] == [250, 250]  # the last 100 wait
    (waiting,) = outcome.waiting
    assert (waiting.reason, waiting.records) == ("rows", 100)
    assert waiting.message.endswith(
        "100 live predictions wait for a window of 250 (it closes at the first prediction "
        "after it: 151 more)"
    )
    first, second = (w.window for w in outcome.computed)
    assert first.end == second.start
    assert _results(outcome.computed[0])[("drift", "share", "")].value is not None


def test_alertmanager_hears_of_a_firing_alert_on_every_pass_until_it_resolves(
    trained: tuple[Path, str, pa.Table],
    monitored_copy: Callable[..., Path],
    tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    root = monitored_copy(tmp_path / "p", _temp_rule(url, "alertmanager"))
    posts = _daily_drift(trained, root, [20.0, 20.0, 20.0, 0.0, 0.0], 50, received)
    assert posts == [1, 2, 3, 4, 4]  # fired, kept alive twice, resolved, then quiet
    assert all(
        len(body) == 1 and body[0]["labels"]["alertname"] == "temp_drift" for body in received
    )
    assert "endsAt" not in received[2][0]
    assert "endsAt" in received[3][0]


def test_online_feature_staleness_is_a_quality_result(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _log_day(project, model, table, DAY0, seed=61, rows=200, stale_every=10)
    with _open(root, DAY0 + timedelta(days=1, minutes=10)) as project:
        found = _results(project.monitor.run().computed[0])
    assert found[("quality", "stale_rate", "weather")].value == pytest.approx(0.1)
    assert found[("quality", "feature_age_p50_s", "weather")].value == pytest.approx(99.5)
    p95 = np.percentile(np.arange(200.0), 95)
    assert found[("quality", "feature_age_p95_s", "weather")].value == pytest.approx(p95)


def test_recent_calibration_uses_the_previous_windows_labels(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p", 'calibration = "recent"\n')
    _, model, table = trained
    with _open(root, DAY0) as project:
        _log_day(project, model, table, DAY0, seed=71)
        _log_day(project, model, table, DAY0 + timedelta(days=1), seed=72, labels=0.0)
    with _open(root, DAY0 + timedelta(days=2, minutes=10)) as project:
        day1, day2 = (_results(w) for w in project.monitor.run().computed)
    assert (
        day1[("estimated", "roc_auc", "")].details["calibration"] == "reference"
    )  # nothing before
    assert day2[("estimated", "roc_auc", "")].details["calibration"] == "recent"
    assert day2[("estimated", "roc_auc", "")].value is not None


def test_a_pass_with_nothing_due_says_which_records_wait_and_until_when(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    root = monitored_copy(tmp_path / "p")
    _, model, table = trained
    with _open(root, DAY0) as project:
        _log_day(project, model, table, DAY0, seed=81, rows=1400, labels=0.0)
    runs = {}
    for name, at in (("open", DAY0 + timedelta(hours=12)), ("grace", DAY0 + timedelta(days=1, minutes=2)),
                     ("due", DAY0 + timedelta(days=1, minutes=10))):  # fmt: skip
        with _open(root, at) as project:
            runs[name] = project.monitor.run()
            if name == "due":
                runs["done"] = project.monitor.run()
    day = Window(DAY0, DAY0 + timedelta(days=1))
    (still_open,) = runs["open"].waiting
    assert runs["open"].computed == []
    assert (still_open.reason, still_open.records, still_open.window) == ("open_window", 1400, day)
    assert still_open.due_at == day.end + timedelta(minutes=5)
    assert still_open.message == (
        "flights: 1,400 records wait for window 2013-02-01, which closes at 2013-02-02 00:00 "
        "UTC (computed from 2013-02-02 00:05 UTC, after the grace period 5m)"
    )
    (grace,) = runs["grace"].waiting
    assert runs["grace"].computed == []
    assert (grace.reason, grace.records, grace.window) == ("grace", 1400, day)
    assert grace.message == (
        "flights: 1,400 records wait for the grace period (5m) until 2013-02-02 00:05 UTC: "
        "window 2013-02-01 closed at 2013-02-02 00:00 UTC"
    )
    assert [w.window.rows for w in runs["due"].computed] == [1400]
    (done,) = runs["done"].waiting
    assert runs["done"].computed == []
    assert (done.reason, done.records, done.computed_until) == ("open_window", 0, day.end)
    assert done.message.startswith("flights: every window up to 2013-02-02 00:00 UTC is computed; ")
    assert runs["done"].to_dict()["waiting"] == [done.to_dict()]
    assert done.to_dict()["due_at"] == "2013-02-03T00:05:00+00:00"


def test_cli_monitor_run_says_why_nothing_is_computed(
    trained: tuple[Path, str, pa.Table], monitored_copy: Callable[..., Path], tmp_path: Path
) -> None:
    runner = CliRunner()
    empty = monitored_copy(tmp_path / "empty")
    human = runner.invoke(app, ["monitor", "run", "-p", str(empty)])
    assert human.exit_code == 0, human.output
    assert "No records in the prediction log" in human.output
    named = runner.invoke(app, ["monitor", "run", "-p", str(empty), "-e", "flights", "--json"])
    assert json.loads(named.output)["waiting"][0]["reason"] == "no_records"

    root = monitored_copy(tmp_path / "p", 'grace = "1000d"\n')
    _, model, table = trained
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    with _open(root, day) as project:
        _log_day(project, model, table, day, seed=82, rows=1400)
    result = runner.invoke(app, ["monitor", "run", "-p", str(root), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["computed"] == []
    (waiting,) = data["waiting"]
    assert (waiting["endpoint"], waiting["reason"], waiting["records"]) == (
        "flights",
        "grace",
        1400,
    )
    assert waiting["due_at"] == (day + timedelta(days=1001)).isoformat()
    human = runner.invoke(app, ["monitor", "run", "-p", str(root)])
    assert human.exit_code == 0, human.output
    assert "1,400 records wait for the grace period (1000d)" in " ".join(human.output.split())
