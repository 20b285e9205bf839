"""Stateful (warm-start) against stateless (from scratch) retraining on the flights demo:
how long each month's training job takes and how well its model ranks the next month.

Set-up: the demo project (``prodml.demo.run_demo`` with ``until`` 2 April 2013: data,
features, the January–March champion ``flight_delay:1``, one replayed day with no
retraining), then two copies of it, one per mode, each advancing its own chain of
versions. At the first day M of each month from May to December 2013 (the project's
clock stands at M and runs at real speed from there):

* stateless: ``project.training.train(2013-01-01, M - 1 day)`` from scratch;
* stateful: ``train(E, M - 1 day, parent=<its previous version>)`` where E is where the
  parent's data ended (M's previous month's first day - 1 day; 1 April for May, the
  champion's end): the demo's training function continues the parent's trees with
  ``params["warm_start_iter"]`` (default 50) more boosting iterations on those new rows
  only. Every ``--full-every``-th retrain (default 3: July and October) is a full
  stateless retrain instead, as the stateless arm's (the same model).

Both run the project's ``[training]`` as configured (``refit = "full"``,
``test_split = "champion"``, no validation split): an evaluated fit, the evaluation,
robustness suite and gate against the arm's champion, then the refit on every row of
the window, which is registered. Each new version is approved and aliased ``champion``
in its own copy. Then month M's labelled flights, with the point-in-time features the
demo loop serves them (``build_training_set`` on the flights' entity columns), are
scored by each arm's new version and by ``flight_delay:1`` (static), and the ROC-AUC of
each is computed with ``prodml.stats.roc_auc``. April is scored by ``flight_delay:1``
for all three.

Times per job: ``job`` the wall seconds of the whole ``train`` call (rows, training set,
both fits, evaluation, gate, registration); ``run`` the recorded run's duration (both
fits and the evaluation); ``refit`` the refit's seconds (the fit of the served model).
The arm that trains first alternates month by month. The machine's load is not
controlled: the load average is printed. ``OMP_NUM_THREADS`` defaults to 1 here (set it
to change that): on a shared, loaded machine the trees' OpenMP threads spin against
other processes' (a 77k-row fit took 2.2 s on one thread and 17.7 s on two, at load 8
on 2 cores).

    .venv/bin/python benchmarks/retraining_modes.py [--quick] [--json] [--dir DIR]

``--quick`` retrains May–July only; ``--dir`` keeps the projects in DIR (``base``,
``stateless``, ``stateful``; an existing ``base`` is reused); ``--json`` prints one JSON
object instead of the table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prodml.core import ensure_utc
from prodml.demo import run_demo
from prodml.demo._loop import served_flights
from prodml.project import Project
from prodml.stats import roc_auc

MODEL = "flight_delay"
ACTOR = "bench-retraining-modes"
JAN = datetime(2013, 1, 1, tzinfo=UTC)
APR = datetime(2013, 4, 1, tzinfo=UTC)
YEAR_END = datetime(2014, 1, 1, tzinfo=UTC)
LABEL_DELAY = timedelta(days=1)
MONTHS = tuple(datetime(2013, m, 1, tzinfo=UTC) for m in range(5, 13))
SUMMER, RETRAINED, ALL = (6, 7, 8), tuple(range(5, 13)), tuple(range(4, 13))


class RunningClock:
    """A clock set to a simulated time that then runs at real speed: the project's
    records are stamped in 2013 and a run's duration is its real one."""

    def __init__(self, start: datetime) -> None:
        self.set(start)

    def set(self, value: datetime) -> None:
        self._start, self._mark = ensure_utc(value), time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._mark)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class Traffic:
    """April–December's labelled flights with the features the demo serves them."""

    features: pd.DataFrame
    late: np.ndarray
    month: np.ndarray


# ---------------------------------------------------------------- set-up


def base_project(root: Path) -> float:
    """The demo project at ``root`` (built unless there), checked to hold only the
    January–March champion; the seconds the build took (0 when reused)."""
    began = time.perf_counter()
    if not (root / "prodml.toml").is_file():
        say(f"building the demo project in {root} (a few minutes)")
        run_demo(root, echo=None, progress=False, until=APR + timedelta(days=1))
    with Project.open(root) as project:
        refs = [v.ref for v in project.registry.versions(MODEL)]
        champion = project.registry.get(f"{MODEL}@champion").ref
    if refs != [f"{MODEL}:1"] or champion != f"{MODEL}:1":
        raise SystemExit(
            f"{root}: versions {refs}, champion {champion}; expected only {MODEL}:1, the "
            "champion (a demo built with a replay retrains): use another --dir"
        )
    return time.perf_counter() - began


def copy_project(base: Path, target: Path) -> Path:
    """A fresh copy of ``base`` at ``target`` (replacing an earlier copy)."""
    if target.exists():
        if not (target / "prodml.toml").is_file():
            raise SystemExit(f"{target} exists and is no prodml project; expected a free path")
        shutil.rmtree(target)
    shutil.copytree(base, target)
    return target


def traffic(project: Project) -> Traffic:
    """April–December's flights as the demo loop builds them, labelled ones only."""
    frame = served_flights(project, APR, YEAR_END)[1].to_pandas()
    late = frame["late"].astype("float64").to_numpy()
    keep = np.isfinite(late)
    frame = frame.loc[keep].reset_index(drop=True)
    month = frame["sched_dep"].dt.tz_convert("UTC").dt.month.to_numpy()
    return Traffic(frame, late[keep], np.asarray(month, np.int64))


# ---------------------------------------------------------------- one month


def scores(project: Project, ref: str, X: pd.DataFrame) -> np.ndarray:
    """The version's scores of ``X`` (its signature's columns), loaded and verified."""
    model = project.registry.load(ref)
    values = np.asarray(model.predict(X[list(model.signature.columns)]))
    return np.asarray(values[:, -1] if values.ndim == 2 else values, dtype=np.float64)


def iterations(project: Project, ref: str) -> int | None:
    """Boosting iterations of the version's trees (the demo pipeline's ``trees`` step)."""
    steps = getattr(project.registry.load(ref).model, "named_steps", {})
    value = getattr(steps.get("trees"), "n_iter_", None)
    return None if value is None else int(value)


def train(
    project: Project,
    window: tuple[datetime, datetime],
    *,
    kind: str,
    parent: str | None,
    params: dict[str, Any] | None,
) -> dict[str, Any]:
    """One training job and its figures; its version becomes the arm's champion."""
    start, end = window
    began = time.perf_counter()
    result = project.training.train(start, end, parent=parent, params=params, actor=ACTOR)
    job_s = time.perf_counter() - began
    version, refit, run = result.version, result.refit, result.run
    if version is None or refit is None:
        raise RuntimeError(f"training {start:%Y-%m-%d}–{end:%Y-%m-%d}: no refitted version")
    expected = "stateless" if parent is None else "warm_start"
    if (result.training or {}).get("mode") != expected:
        raise RuntimeError(f"{version.ref}: training {result.training}; expected {expected}")
    project.registry.approve(version.ref, actor=ACTOR, reason="benchmark: the arm's newest")
    project.registry.set_alias(MODEL, "champion", version.ref, actor=ACTOR, reason="benchmark")
    run_s = None if run.end_time is None else (run.end_time - run.start_time).total_seconds()
    return {
        "version": version.ref,
        "kind": kind,
        "parent": parent,
        "window": [start.isoformat(), end.isoformat()],
        "rows": refit.rows,
        "evaluated_train_rows": result.split.get("train"),
        "job_s": round(job_s, 2),
        "run_s": None if run_s is None else round(run_s, 2),
        "refit_s": round(refit.seconds, 2),
        "gate": result.gate.status,
        "artifact_sha256": result.artifact_sha256,
        "iterations": iterations(project, version.ref),
    }


# ---------------------------------------------------------------- the schedule


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    months = MONTHS[:3] if args.quick else MONTHS
    began = time.perf_counter()
    build_s = base_project(root / "base")
    clocks = {mode: RunningClock(APR) for mode in ("stateless", "stateful")}
    projects = {
        mode: Project.open(copy_project(root / "base", root / mode), clock=clocks[mode])
        for mode in clocks
    }
    try:
        flights = traffic(projects["stateless"])
        static = scores(projects["stateless"], f"{MODEL}:1", flights.features)
        april = flights.month == 4
        start_auc = roc_auc(flights.late[april], static[april])
        table: list[dict[str, Any]] = [
            {"month": "2013-04", "flights": int(april.sum()), "static_auc": start_auc,
             "stateless": {"version": f"{MODEL}:1", "kind": "start", "auc": start_auc},
             "stateful": {"version": f"{MODEL}:1", "kind": "start", "auc": start_auc}}
        ]  # fmt: skip
        parent, parent_end = f"{MODEL}:1", APR
        params = None if args.warm_start_iter is None else {"warm_start_iter": args.warm_start_iter}
        for i, month in enumerate(months):
            end = month - LABEL_DELAY
            full = (i + 1) % args.full_every == 0
            for clock in clocks.values():
                clock.set(month)
            done: dict[str, dict[str, Any]] = {}
            order = ("stateless", "stateful") if i % 2 == 0 else ("stateful", "stateless")
            for mode in order:
                if mode == "stateless":
                    window, kind, base = (JAN, end), "stateless", None
                elif full:
                    window, kind, base = (JAN, end), "full", None
                else:
                    window, kind, base = (parent_end, end), "warm", parent
                say(f"{month:%Y-%m} {mode}: {kind} on {window[0]:%Y-%m-%d}–{window[1]:%Y-%m-%d}")
                done[mode] = train(projects[mode], window, kind=kind, parent=base,
                                   params=None if base is None else params)  # fmt: skip
                say(f"  {done[mode]['version']}: {done[mode]['rows']:,} rows, "
                    f"job {done[mode]['job_s']:.1f} s")  # fmt: skip
            parent, parent_end = done["stateful"]["version"], end
            pick = flights.month == month.month
            X, y = flights.features[pick], flights.late[pick]
            for mode in done:
                done[mode]["auc"] = roc_auc(y, scores(projects[mode], done[mode]["version"], X))
            table.append({"month": f"{month:%Y-%m}", "flights": int(pick.sum()),
                          "static_auc": roc_auc(y, static[pick]), **done})  # fmt: skip
    finally:
        for project in projects.values():
            project.close()
    return {
        "benchmark": "retraining_modes",
        "months": table,
        "full_months": [m["month"] for m in table if m["stateful"]["kind"] == "full"],
        "full_every": args.full_every,
        "warm_start_iter": args.warm_start_iter or "trainer default (50)",
        "totals": totals(table),
        "means": means(table),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpus": os.cpu_count(),
        "build_s": round(build_s, 1),
        "wall_s": round(time.perf_counter() - began, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def totals(table: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Sums over the retrained months of each arm's rows and seconds."""
    out: dict[str, dict[str, float]] = {}
    for mode in ("stateless", "stateful"):
        arms = [m[mode] for m in table if m[mode]["kind"] != "start"]
        out[mode] = {key: round(sum(a[key] or 0 for a in arms), 2)
                     for key in ("rows", "job_s", "run_s", "refit_s")}  # fmt: skip
    out["stateless_over_stateful"] = {
        key: round(out["stateless"][key] / out["stateful"][key], 2)
        for key in out["stateless"]
        if out["stateful"][key]
    }
    return out


def means(table: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean monthly ROC-AUC of each arm and of the static model over Jun–Aug, May–Dec
    (the retrained months) and Apr–Dec."""

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return float(np.mean(kept)) if kept else None

    out: dict[str, float | None] = {}
    for name, months in (("jun_aug", SUMMER), ("may_dec", RETRAINED), ("apr_dec", ALL)):
        rows = [m for m in table if int(m["month"][5:]) in months]
        if not rows:
            continue
        out[f"stateless_{name}"] = mean([m["stateless"]["auc"] for m in rows])
        out[f"stateful_{name}"] = mean([m["stateful"]["auc"] for m in rows])
        out[f"static_{name}"] = mean([m["static_auc"] for m in rows])
    return out


# ---------------------------------------------------------------- report


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _n(value: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def print_table(report: dict[str, Any]) -> None:
    arm = "     rows  job s  run s  refit s  iters  AUC  "
    print(f"{'':18}stateless (from scratch){'':25}stateful (warm start; full every "
          f"{report['full_every']})")  # fmt: skip
    print(f"{'month':<8} {'flights':>7}  {arm}  kind   {arm}  static AUC")
    for m in report["months"]:
        cells = []
        for mode in ("stateless", "stateful"):
            a = m[mode]
            cells.append(
                f"{_n(a.get('rows'), ',', 9)}  {_n(a.get('job_s'), '.1f', 5)}  "
                f"{_n(a.get('run_s'), '.1f', 5)}  {_n(a.get('refit_s'), '.1f', 7)}  "
                f"{_n(a.get('iterations'), 'd', 5)}  {_n(a.get('auc'), '.3f', 5)}"
            )
        kind = m["stateful"]["kind"]
        print(f"{m['month']:<8} {m['flights']:>7,}  {cells[0]}  {kind:<5}  {cells[1]}  "
              f"{_n(m['static_auc'], '.3f', 10)}")  # fmt: skip
    t = report["totals"]
    cells = [
        f"{t[mode]['rows']:>9,.0f}  {t[mode]['job_s']:>5.1f}  {t[mode]['run_s']:>5.1f}  "
        f"{t[mode]['refit_s']:>7.1f}  {'':>5}  {'':>5}"
        for mode in ("stateless", "stateful")
    ]
    print(f"{'total':<8} {'':>7}  {cells[0]}  {'':<5}  {cells[1]}")
    ratio = t["stateless_over_stateful"]
    print(
        "stateless / stateful: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.2f}x" for k, v in ratio.items())
    )
    s = report["means"]
    for name, label in (("jun_aug", "Jun–Aug"), ("may_dec", "May–Dec"), ("apr_dec", "Apr–Dec")):
        if f"stateless_{name}" in s:
            print(f"mean AUC {label}: stateless {_n(s[f'stateless_{name}'], '.4f', 6)}, "
                  f"stateful {_n(s[f'stateful_{name}'], '.4f', 6)}, "
                  f"static {_n(s[f'static_{name}'], '.4f', 6)}")  # fmt: skip
    full = [m for m in report["months"] if m["stateful"]["kind"] == "full"]
    same = all(m["stateful"]["artifact_sha256"] == m["stateless"]["artifact_sha256"] for m in full)
    print(f"full stateless retrains of the stateful arm: "
          f"{', '.join(m['month'] for m in full) or 'none'}"
          + (f" (the stateless arm's model, byte for byte: {'yes' if same else 'NO'})" if full else "")
          + f"; warm starts add {report['warm_start_iter']} iterations")  # fmt: skip
    load = report["load_average"]
    print(f"load average {load[0]} {load[1]} {load[2]} on {report['cpus']} CPUs, "
          f"OMP_NUM_THREADS={report['omp_num_threads']}; demo build {report['build_s']} s, "
          f"wall time {report['wall_s']} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="retrain May–July only")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument("--dir", type=Path, default=None, help="keep the projects here")
    parser.add_argument("--full-every", type=int, default=3,
                        help="every Nth retrain of the stateful arm is from scratch")  # fmt: skip
    parser.add_argument("--warm-start-iter", type=int, default=None,
                        help="boosting iterations a warm start adds (trainer default 50)")  # fmt: skip
    args = parser.parse_args()
    if args.full_every < 1:
        parser.error(f"--full-every {args.full_every}: expected at least 1")
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        report = run(args, args.dir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="prodml-retraining-modes-") as tmp:
            report = run(args, Path(tmp))
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
