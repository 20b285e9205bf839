"""The demo's closed loop: April–December 2013 replayed day by day as production.

Every flight is one request at its scheduled departure. Its features are the
point-in-time values the online store would have served then (the offline join that
training uses, so nothing from the future leaks in). The deployment of the day routes
it exactly as the server does (:func:`~prodml.serving.routed_arms`: the arms' weights
and the unit hash), the arm's model answers, shadow arms answer off the record, and
every answer goes to the prediction log through the server's own
:class:`~prodml.serving.PredictionLog`. A flight's label (``late``) reaches the label
log when it lands. At the end of each simulated day the controllers run their passes on
the project clock: the retraining controller (its policy retrains monthly on every
labelled flight so far, gates, refits, calibrates and hands the candidate to the
rollout controller), the rollout controller (canary, then promote or roll back on the
logged evidence), and the monitor when a monthly window closes.

The loop ends with a table per month scored on the same flights: the model the endpoint
actually served, the static January–March model, and a monthly-expanding oracle (the
candidate the retrain job at the month's start produced — the same recipe refitted on
every flight labelled before the month — as if promoted at once).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prodml.core import ConflictError, NotFoundError, ProdMLError, SimulatedClock, StateError
from prodml.demo.flights_features import ENTITY_COLUMNS
from prodml.features import TrainingSet
from prodml.project import Project
from prodml.serving import Prediction, PredictionLog, routed_arms
from prodml.stats import expected_calibration_error, roc_auc

__all__ = ["LOOP_END", "LOOP_START", "run_loop", "served_flights"]

LOOP_START = datetime(2013, 4, 1, tzinfo=UTC)
LOOP_END = datetime(2014, 1, 1, tzinfo=UTC)
ENDPOINT = "flight_delay"
DAY = timedelta(days=1)

Echo = Callable[[str], None]
Progress = Callable[[str, int, int], None]


class _RecordClock:
    """The log's clock: ``now`` is the departure of the request being logged (the arms
    of a day are logged one after the other, so it moves back and forth within the
    day); the writer's flush timing runs on the real monotonic clock."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def set(self, value: datetime) -> None:
        self._now = value

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class _Traffic:
    """The replayed flights in departure order, their point-in-time features and what
    the loop records of each: which model answered and its score."""

    flights: pa.Table
    features: pd.DataFrame
    ids: list[str]
    times: list[datetime]
    day: np.ndarray  # day index from LOOP_START
    landed: list[datetime | None]
    late: np.ndarray  # 1.0 / 0.0 / NaN (no label: cancelled or diverted)
    served: np.ndarray  # score the endpoint answered
    served_by: np.ndarray  # model version that answered (object)
    entities: dict[str, list[Any]]  # the request's entity keys, per flight


def served_flights(project: Project, start: datetime, end: datetime) -> tuple[pa.Table, TrainingSet]:  # fmt: skip
    """The flights scheduled to depart in ``[start, end)`` in departure order, and their
    point-in-time features: the offline join training uses, so what each request is
    served with is exactly what the online store held at its departure."""
    flights = pq.read_table(project.root / "data" / "flights.parquet")
    when = flights["sched_dep"]
    window = pc.and_(
        pc.greater_equal(when, pa.scalar(start, when.type)),
        pc.less(when, pa.scalar(end, when.type)),
    )
    flights = flights.filter(window).sort_by("sched_dep")
    features = project.features.build_training_set(
        flights.select(list(ENTITY_COLUMNS)), ENDPOINT, timestamp="sched_dep", label="late"
    )
    return flights, features


def _traffic(project: Project, end: datetime) -> _Traffic:
    flights, training_set = served_flights(project, LOOP_START, end)
    features = training_set.to_pandas()
    times = features["sched_dep"].dt.to_pydatetime().tolist()
    start = np.datetime64(LOOP_START.replace(tzinfo=None), "us")
    stamps = features["sched_dep"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    day = ((stamps.astype("datetime64[us]") - start) // np.timedelta64(1, "D")).astype(np.int64)
    late = np.array([math.nan if v is None else float(v) for v in flights["late"].to_pylist()])
    n = flights.num_rows
    return _Traffic(
        flights, features, [f"replay-{i}" for i in flights["flight_id"].to_pylist()], times,
        day, flights["landed_at"].to_pylist(), late, np.full(n, math.nan),
        np.empty(n, dtype=object),
        {k: flights[k].to_pylist() for k in ("origin", "tailnum", "carrier")},
    )  # fmt: skip


def _scores(values: Any) -> np.ndarray:
    array = np.asarray(values)
    return np.asarray(array[:, -1] if array.ndim == 2 else array, dtype=np.float64)


class _Models:
    """Loaded model versions, by reference (each loaded once, verified)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.loaded: dict[str, Any] = {}

    def answer(self, ref: str, X: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """The model's inputs of ``X`` (its signature's columns) and its scores."""
        model = self.loaded.get(ref)
        if model is None:
            model = self.loaded[ref] = self.project.registry.load(ref)
        inputs = X[list(model.signature.columns)]
        return inputs, _scores(model.predict(inputs))

    def score(self, ref: str, X: pd.DataFrame) -> np.ndarray:
        return self.answer(ref, X)[1]


def run_loop(
    project: Project,
    say: Echo,
    *,
    end: datetime = LOOP_END,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay ``[LOOP_START, end)`` day by day with the controllers' passes; the month
    table, the decisions and the checks (see the module docstring)."""
    clock = project.clock
    if not isinstance(clock, SimulatedClock):
        raise StateError("the demo loop needs a project opened on a SimulatedClock")
    started = time.perf_counter()
    traffic = _traffic(project, end)
    models = _Models(project)
    record_clock = _RecordClock(LOOP_START)
    log = PredictionLog(project.logs, clock=record_clock, flush_rows=100_000,
                        flush_interval_s=3600.0, max_queue=2_000_000)  # fmt: skip
    days = int((end - LOOP_START) / DAY)
    order = np.argsort(traffic.day, kind="stable")
    bounds = np.searchsorted(traffic.day[order], np.arange(days + 1))
    landed_day = _landed_days(traffic, days)
    timings = {"replay": 0.0, "retraining": 0.0, "rollout": 0.0, "monitor": 0.0}
    events: list[dict[str, Any]] = []
    try:
        for d in range(days):
            t0 = time.perf_counter()
            rows = order[bounds[d] : bounds[d + 1]]
            _serve_day(project, models, log, record_clock, traffic, rows)
            for i, landed in landed_day.get(d, ()):
                log.record_label({"time": landed, "endpoint": ENDPOINT,
                                  "request_id": traffic.ids[i], "row": 0,
                                  "label": bool(traffic.late[i])})  # fmt: skip
            log.predictions.flush()
            log.labels.flush()
            timings["replay"] += time.perf_counter() - t0
            today = LOOP_START + (d + 1) * DAY
            clock.set(today)
            # After the last day nothing is served: a retrain then would answer no request.
            events += _passes(project, say, today, timings, retrain=today < end)
            if progress is not None:
                progress("Replaying April–December day by day", d + 1, days)
    finally:
        log.close(timeout=120)
    stats = log.stats
    dropped = stats["predictions"].dropped + stats["labels"].dropped
    if dropped:
        raise StateError(f"demo loop: the log writer dropped {dropped} records; expected none")
    say(
        f"Replayed {len(traffic.ids):,} flights day by day: {stats['predictions'].written_rows:,} "
        f"prediction records, {stats['labels'].written_rows:,} labels; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    )
    t0 = time.perf_counter()
    table = _month_table(project, traffic, models)
    timings["scoring"] = time.perf_counter() - t0
    promotions = _promotion_checks(project, traffic, models)
    _show(say, table, promotions, events)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "months": table,
        "summary": _summary(table),
        "promotions": promotions,
        "events": events,
        "jobs": [j.to_dict() for j in project.retraining.history(limit=100)],
    }


def _landed_days(traffic: _Traffic, days: int) -> dict[int, list[tuple[int, datetime]]]:
    """The labelled flights landing on each day: (flight, landing time)."""
    out: dict[int, list[tuple[int, datetime]]] = {}
    for i, when in enumerate(traffic.landed):
        if when is None or not math.isfinite(traffic.late[i]):
            continue
        d = int((when - LOOP_START) / DAY)
        if 0 <= d < days:
            out.setdefault(d, []).append((i, when))
    return out


def _serve_day(
    project: Project, models: _Models, log: PredictionLog, clock: _RecordClock,
    traffic: _Traffic, rows: np.ndarray,
) -> None:  # fmt: skip
    """Route and answer one day's requests as the deployment of the day says."""
    if len(rows) == 0:
        return
    spec = project.deployments.get(ENDPOINT).spec
    ids = [traffic.ids[i] for i in rows]
    arms, shadowed = routed_arms(spec, ENDPOINT, ids)
    chosen = np.asarray(arms, dtype=object)
    X = traffic.features.iloc[rows]
    for arm in spec.arms:
        pick = np.asarray(shadowed, dtype=bool) if arm.role == "shadow" else chosen == arm.name
        if not pick.any():
            continue
        inputs, scores = models.answer(arm.model, X[pick])
        picked = rows[pick]
        shadow = arm.role == "shadow"
        if not shadow:
            traffic.served[picked] = scores
            traffic.served_by[picked] = arm.model
        # A shadow record holds no feature values (they are its live record's).
        records: list[Any] = [{}] * len(picked) if shadow else inputs.to_dict("records")
        one_row = pd.DataFrame(index=[0])
        for j, i in enumerate(picked):
            clock.set(traffic.times[i])
            prediction = Prediction(
                traffic.ids[i], ENDPOINT, arm.name, arm.model, scores[j : j + 1], "ok",
                role=arm.role,
            )  # fmt: skip
            log.record(
                prediction, one_row, rows=[records[j]], unit=traffic.ids[i], latency_ms=1.0,
                shadow=shadow,
                entities={k: [values[i]] for k, values in traffic.entities.items()},
                protocol="native",
            )  # fmt: skip


def _passes(project: Project, say: Echo, today: datetime, timings: dict[str, float], *, retrain: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    """The controllers' passes at the end of a day; what they did that matters."""
    events: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for job in project.retraining.run_once() if retrain else ():
        text = f"{today:%Y-%m-%d} retrain job ({job.trigger}): {job.status}"
        if job.candidate:
            text += f" → {job.candidate}"
        if job.error:
            text += f": {job.error}"
        say(text)
        events.append({"day": today.isoformat(), "kind": "retrain", **job.to_dict()})
    t1 = time.perf_counter()
    timings["retraining"] += t1 - t0
    try:
        decisions = project.rollout.run_once(ENDPOINT)
    except (ConflictError, NotFoundError) as exc:  # pragma: no cover - single controller here
        say(f"{today:%Y-%m-%d} rollout pass skipped: {exc}")
        decisions = []
    for decision in decisions:
        if decision.action in ("hold", "continue"):
            continue
        say(f"{today:%Y-%m-%d} rollout: {decision.action}: {decision.reason}")
        events.append({"day": today.isoformat(), "kind": "rollout", **decision.to_dict()})
    t2 = time.perf_counter()
    timings["rollout"] += t2 - t1
    if today.day == 1:  # a monthly window closed
        try:
            project.monitor.run(endpoint=ENDPOINT)
        except ProdMLError as exc:
            say(f"{today:%Y-%m-%d} monitor pass failed: {exc}")
    timings["monitor"] += time.perf_counter() - t2
    return events


# -- the month table ----------------------------------------------------------------------


def _month_of(traffic: _Traffic) -> np.ndarray:
    months = traffic.features["sched_dep"].dt.tz_convert("UTC").dt.month.to_numpy()
    return np.asarray(months, np.int64)


def _oracle_scores(project: Project, traffic: _Traffic, months: np.ndarray, models: _Models) -> np.ndarray:  # fmt: skip
    """Each month scored by the model of the retrain job that ran at its start (the same
    recipe refitted on every flight labelled before the month), as if promoted at once;
    a month without such a job keeps the previous month's model (NaN before any)."""
    starts: dict[int, str] = {}
    for job in project.retraining.history(limit=1000):
        when = job.started_at
        if job.candidate and when.year == 2013 and when.day == 1:
            starts[when.month] = job.candidate
    out = np.full(len(traffic.ids), math.nan)
    current = None
    for month in sorted(set(months.tolist())):
        current = starts.get(month, current)
        if current is None:
            continue
        pick = months == month
        out[pick] = models.score(current, traffic.features[pick])
    return out


def _month_table(project: Project, traffic: _Traffic, models: _Models) -> list[dict[str, Any]]:
    months = _month_of(traffic)
    static_ref = _static_ref(project)
    static = models.score(static_ref, traffic.features)
    oracle = _oracle_scores(project, traffic, months, models)
    table = []
    for month in sorted(set(months.tolist())):
        pick = (months == month) & np.isfinite(traffic.late) & np.isfinite(traffic.served)
        y = traffic.late[pick]
        served_by = sorted({str(v) for v in traffic.served_by[pick]})
        table.append(
            {
                "month": f"2013-{month:02d}",
                "flights": int(pick.sum()),
                "late_rate": float(y.mean()) if len(y) else None,
                "served_models": served_by,
                "served_auc": roc_auc(y, traffic.served[pick]),
                "served_ece": expected_calibration_error(y, traffic.served[pick]),
                "static_auc": roc_auc(y, static[pick]),
                "static_ece": expected_calibration_error(y, static[pick]),
                "oracle_auc": _auc(y, oracle[pick]),
            }
        )
    return table


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC over the flights that have a score (None: none has)."""
    scored = np.isfinite(scores)
    return roc_auc(y[scored], scores[scored]) if scored.any() else None


def _static_ref(project: Project) -> str:
    """The first version of the model: the January–March champion."""
    versions = project.registry.versions(ENDPOINT)
    return min(versions, key=lambda v: v.version).ref


def _mean(table: list[dict[str, Any]], key: str, months: tuple[int, ...]) -> float | None:
    values = [m[key] for m in table if int(m["month"][5:]) in months and m[key] is not None]
    return float(np.mean(values)) if values else None


def _summary(table: list[dict[str, Any]]) -> dict[str, Any]:
    summer, year = (6, 7, 8), tuple(range(4, 13))
    return {
        f"{key}_{name}": _mean(table, key, months)
        for key in ("served_auc", "static_auc", "oracle_auc", "served_ece", "static_ece")
        for name, months in (("jun_aug", summer), ("apr_dec", year))
    }


def _promotion_checks(project: Project, traffic: _Traffic, models: _Models) -> list[dict[str, Any]]:  # fmt: skip
    """Each promotion: the new champion against the one it replaced, on the requests of
    the 30 days after it (both scored on the same flights)."""
    out: list[dict[str, Any]] = []
    stamps = np.array([t.timestamp() for t in traffic.times])
    champion: str | None = None
    for entry in project.deployments.history(ENDPOINT):
        arms = (entry["spec"] or {}).get("arms", [])
        now_champion: str | None = next(
            (a["model"] for a in arms if a.get("role") == "champion"), None
        )
        old, champion = champion, now_champion or champion
        if entry["action"] != "promote" or old is None or champion is None or old == champion:
            continue
        t = entry["time"].timestamp()
        pick = (stamps >= t) & (stamps < t + 30 * 86400) & np.isfinite(traffic.late)
        if not pick.any():
            continue
        X, y = traffic.features[pick], traffic.late[pick]
        new_auc = roc_auc(y, models.score(champion, X))
        old_auc = roc_auc(y, models.score(old, X))
        out.append(
            {
                "time": entry["time"].isoformat(), "new": champion, "old": old,
                "flights": int(pick.sum()), "new_auc": new_auc, "old_auc": old_auc,
                "ok": new_auc is None or old_auc is None or new_auc >= old_auc - 0.01,
            }
        )  # fmt: skip
    return out


def _f(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def _show(say: Echo, table: list[dict[str, Any]], promotions: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:  # fmt: skip
    say("Realized ROC-AUC (ECE) per month, scored on the same flights:")
    say("  month    flights  late   served        static        oracle  served by")
    for m in table:
        say(
            f"  {m['month']}  {m['flights']:>7,}  {_f(m['late_rate'])}  "
            f"{_f(m['served_auc'])} ({_f(m['served_ece'])})  {_f(m['static_auc'])} "
            f"({_f(m['static_ece'])})  {_f(m['oracle_auc'])}  {', '.join(m['served_models'])}"
        )
    s = _summary(table)
    say(
        f"  mean Jun–Aug: served {_f(s['served_auc_jun_aug'])}, static {_f(s['static_auc_jun_aug'])}, "
        f"oracle {_f(s['oracle_auc_jun_aug'])}; Apr–Dec: served {_f(s['served_auc_apr_dec'])}, "
        f"static {_f(s['static_auc_apr_dec'])}, oracle {_f(s['oracle_auc_apr_dec'])}; "
        f"served ECE Apr–Dec {_f(s['served_ece_apr_dec'])}"
    )
    for p in promotions:
        verdict = "ok" if p["ok"] else "WORSE by more than 0.01"
        say(
            f"  promotion {p['time'][:10]}: {p['new']} replaced {p['old']}: AUC "
            f"{_f(p['new_auc'])} vs {_f(p['old_auc'])} on the next {p['flights']:,} flights: {verdict}"
        )
    retrains = sum(1 for e in events if e["kind"] == "retrain")
    rollouts = [e for e in events if e["kind"] == "rollout"]
    say(
        f"  {retrains} retrain jobs, {len(rollouts)} rollout decisions "
        f"({', '.join(sorted({e['action'] for e in rollouts})) or 'none'}), "
        f"{len(promotions)} promotions"
    )
