"""Replay April–December 2013 as production traffic on endpoint ``flight_delay``, then
monitor it month by month.

Every flight becomes one prediction request at its scheduled departure: its features
are the point-in-time values the online store would have served then (the offline join
that training uses, so nothing from the future leaks in), the deployed champion
answers, the shadow arm answers off the record, and both go to the prediction log
through :class:`~prodml.serving.PredictionLog` — the server's own log writer, with the
record time set to the departure. When the flight lands, its label (``late``) goes to
the label log under the request id, at the landing time. A monitoring pass with the
clock a week after the year's end then computes the monthly windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prodml.core import SimulatedClock, StateError
from prodml.demo.flights_features import ENTITY_COLUMNS
from prodml.project import Project
from prodml.serving import Prediction, PredictionLog

__all__ = ["MONITOR_CLOCK_AT", "REPLAY_END", "REPLAY_START", "monitor_year", "replay_production"]

REPLAY_START = datetime(2013, 4, 1, tzinfo=UTC)
REPLAY_END = datetime(2014, 1, 1, tzinfo=UTC)
#: The clock of the monitoring pass: a week after the replayed year, so every label is in.
MONITOR_CLOCK_AT = REPLAY_END + timedelta(days=8)
ENDPOINT = "flight_delay"

Echo = Callable[[str], None]
Progress = Callable[[str, int, int], None]


class _RecordClock(SimulatedClock):
    """The replay's clock: ``now`` is the time of the record being logged; the writer's
    flush timing runs on the real monotonic clock."""

    def monotonic(self) -> float:
        return time.monotonic()


def replay_production(project: Project, say: Echo, *, limit: int | None = None) -> dict[str, Any]:
    """Log the replayed traffic and labels, then run one monitoring pass."""
    deployment = project.deployments.get(ENDPOINT)
    arms = {arm.name: arm for arm in deployment.spec.arms}
    live = next(a for a in deployment.spec.arms if a.role == "champion")
    shadows = [a for a in deployment.spec.arms if a.role == "shadow"]
    flights = pq.read_table(project.root / "data" / "flights.parquet")
    when = flights["sched_dep"]
    window = pc.and_(
        pc.greater_equal(when, pa.scalar(REPLAY_START, when.type)),
        pc.less(when, pa.scalar(REPLAY_END, when.type)),
    )
    flights = flights.filter(window)
    if limit is not None:
        flights = flights.slice(0, limit)
    t0 = time.perf_counter()
    features = project.features.build_training_set(
        flights.select(list(ENTITY_COLUMNS)), "flight_delay", timestamp="sched_dep", label="late"
    ).to_pandas()
    models = {
        name: project.registry.load(arms[name].model)
        for name in [live.name, *(s.name for s in shadows)]
    }
    scores = {
        name: _scores(model.predict(features[list(model.signature.columns)]))
        for name, model in models.items()
    }
    clock = _RecordClock(REPLAY_START)
    log = PredictionLog(project.logs, clock=clock, flush_rows=50_000, max_queue=2_000_000)
    times = features["sched_dep"].dt.to_pydatetime()
    landed = flights["landed_at"].to_pylist()
    late = flights["late"].to_pylist()
    ids = [f"replay-{i}" for i in flights["flight_id"].to_pylist()]
    inputs = list(models[live.name].signature.columns)
    rows: list[dict[str, Any]] = features[inputs].to_dict("records")  # type: ignore[assignment]
    keys = {k: flights[k].to_pylist() for k in ("origin", "tailnum", "carrier")}
    one_row = pd.DataFrame(index=[0])  # the log reads only a request frame's length here
    try:
        for i, request_id in enumerate(ids):
            clock.set(times[i])
            entities = {k: [values[i]] for k, values in keys.items()}
            for arm in [live, *shadows]:
                prediction = Prediction(
                    request_id, ENDPOINT, arm.name, models[arm.name].version.ref,
                    scores[arm.name][i : i + 1], "ok", role=arm.role,
                )  # fmt: skip
                log.record(
                    prediction, one_row, rows=[rows[i]], unit=request_id, latency_ms=1.0,
                    shadow=arm.role == "shadow", entities=entities, protocol="native",
                )  # fmt: skip
            if late[i] is not None and landed[i] is not None:
                log.record_label(
                    {
                        "time": landed[i],
                        "endpoint": ENDPOINT,
                        "request_id": request_id,
                        "row": 0,
                        "label": bool(late[i]),
                    }
                )
    finally:
        log.close(timeout=120)
    stats = log.stats
    logged = {name: stats[name].written_rows for name in ("predictions", "labels")}
    dropped = stats["predictions"].dropped + stats["labels"].dropped
    if dropped:
        raise StateError(f"replay: the log writer dropped {dropped} records; expected none")
    say(
        f"Replayed {len(ids):,} flights (Apr–Dec 2013) through {live.model} with "
        f"{', '.join(s.model for s in shadows) or 'no shadow'} in shadow: {logged['predictions']:,} "
        f"prediction records, {logged['labels']:,} labels in {time.perf_counter() - t0:.1f} s"
    )
    return {"flights": len(ids), **logged}


def monitor_year(project: Project, say: Echo, progress: Progress | None = None) -> dict[str, Any]:
    """One monitoring pass (the project's clock stands a week after the replayed year)
    and a month-by-month summary of the live arm: drift, late rate, and the estimated
    against the realized ROC-AUC and accuracy, with the estimates' mean absolute error."""
    t0 = time.perf_counter()
    outcome = project.monitor.run(endpoint=ENDPOINT, progress=progress)
    seconds = time.perf_counter() - t0
    live = [
        r for r in project.monitor.stored(endpoint=ENDPOINT) if r.window.arm and not r.window.shadow
    ]
    months = []
    for report in live:
        window = report.window
        found = {(r.check, r.metric, r.column): r for r in report.results}

        def value(check: str, metric: str, column: str = "", found: dict[Any, Any] = found) -> Any:
            result = found.get((check, metric, column))
            return None if result is None else result.value

        drifted = sorted(
            (r for r in report.results if r.check == "drift" and r.status == "drift" and r.column),
            key=lambda r: -(r.value or 0.0),
        )
        months.append(
            {
                "month": f"{window.start:%Y-%m}",
                "rows": window.rows,
                "drift_share": value("drift", "share"),
                "drifted": [r.column for r in drifted],
                "late_rate": value("label", "label_rate"),
                "roc_auc": value("performance", "roc_auc"),
                "roc_auc_estimated": value("estimated", "roc_auc"),
                "accuracy": value("performance", "accuracy"),
                "accuracy_estimated": value("estimated", "accuracy"),
            }
        )
    errors = {
        metric: _mae([(m[f"{metric}_estimated"], m[metric]) for m in months])
        for metric in ("roc_auc", "accuracy")
    }
    say(f"Monitored {len(outcome.computed)} new windows in {seconds:.1f} s (monthly, live arm):")
    say("  month    rows  drift share  late rate  AUC est/real   acc est/real  most drifted")
    for m in months:
        say(
            f"  {m['month']}  {m['rows']:>6,}  {_f(m['drift_share'])}        {_f(m['late_rate'])}"
            f"      {_f(m['roc_auc_estimated'])}/{_f(m['roc_auc'])}    {_f(m['accuracy_estimated'])}/"
            f"{_f(m['accuracy'])}   {', '.join(m['drifted'][:4]) or '-'}"
        )
    say(
        f"Estimated vs realized, mean absolute error over {len(months)} months: "
        f"ROC-AUC {_f(errors['roc_auc'])}, accuracy {_f(errors['accuracy'])}"
    )
    return {"seconds": round(seconds, 2), "months": months, "estimate_mae": errors}


def _f(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def _mae(pairs: list[tuple[float | None, float | None]]) -> float | None:
    diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
    return sum(diffs) / len(diffs) if diffs else None


def _scores(values: Any) -> np.ndarray:
    array = np.asarray(values)
    return np.asarray(array[:, -1] if array.ndim == 2 else array, dtype=np.float64)
