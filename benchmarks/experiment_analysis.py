"""Benchmark: analysing an experiment of 10M logged predictions with labels, end to end
from the log store, against a pandas implementation of the same numbers.

A temp project's local log store gets ``--rows`` prediction records over one week (two
arms 50/50 by unit from 2M units, realistic columns: ids, role, model version, status,
latency, output, feature and entity columns; 0.1% errors, the challenger 0.05%
fallbacks to the champion) and a label for 95% of them, an hour later. Files are
written in the log layout, one per endpoint and hour (what a compacted log holds; the
live writer writes one per flush), with the storage module's own ``write_table`` (zstd).

Then ``--runs`` interleaved rounds (analysis, pandas, analysis, …), in one process; the
median and minimum of each side are reported:

* ``analyze_experiment(logs, endpoint, guardrails=[error rate, fallback rate, p99
  latency], expected_weights=50/50)`` — reads the store, joins the labels, computes
  everything it reports (arms, the comparison with its tests and sequence, guardrails,
  SRM, over time);
* pandas: read the same Parquet files with ``pd.read_parquet``, keep each request's
  latest label (``sort_values`` + ``drop_duplicates``), ``merge``, then ``groupby`` the
  routed arm: records, distinct requests and units, error and fallback rates, latency
  p50/p95/p99/mean, log loss mean and variance on labelled rows, Welch's t test
  (``scipy.stats.ttest_ind_from_stats``).

The numbers of both must agree (counts exactly, floats to 1e-9 relative); the script
prints seconds, the ratio, how long the store's own Arrow read of both logs takes (the
analysis' fallback path; it scans the files itself), and the load average (other
processes on the machine slow both sides).

    .venv/bin/python benchmarks/experiment_analysis.py [--rows N | --quick] [--runs 5]

The last stdout line is one JSON object (``benchmarks/_table.py``) with every figure and
the target (≤ 3 s at 10M rows on 2 cores, on the median).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from _table import Row, emit, interleaved, load_average, summary
from prodml.rollout import Guardrail
from prodml.rollout._analysis import ExperimentAnalysis, analyze_experiment
from prodml.rollout._analysis_data import COLUMNS, LABEL_COLUMNS
from prodml.storage import LogStores, open_log_stores
from prodml.storage._log_format import LABELS_DIR, PREDICTIONS_DIR, hour_dir
from prodml.storage._tables import write_table

ENDPOINT = "flight_delay"
START = datetime(2013, 6, 3, tzinfo=UTC)
HOURS = 7 * 24
UNITS = 2_000_000
TARGET_S = 3.0
EPS = float(np.finfo(np.float64).eps)
GUARDRAILS = [
    Guardrail("error_rate", 0.005),
    Guardrail("fallback_rate", 0.005),
    Guardrail("p99_latency_ms", 0.2, relative=True),
]


def _hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """n random 32-character hex ids (uuid4().hex-like), built without Python strings."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((n, 32), dtype=np.uint8)
    text[:, 0::2], text[:, 1::2] = digits[raw >> 4], digits[raw & 15]
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def _hour(rng: np.random.Generator, start: datetime, n: int) -> tuple[pa.Table, pa.Table]:
    """One hour's prediction records and their labels."""
    micros = int(start.timestamp()) * 1_000_000
    times = np.sort(rng.integers(0, 3_600_000_000, n)) + micros
    unit = rng.integers(0, UNITS, n)
    challenger = (unit * 2654435761 % 2**32) < 2**31  # sticky 50/50 by unit
    y = rng.random(n) < 0.25
    quality = np.where(challenger, 1.1, 1.0)
    logit = -1.2 + quality * np.where(y, 1.3, -0.4) + rng.normal(0, 1.0, n)
    output = 1 / (1 + np.exp(-logit))
    error = rng.random(n) < 0.001
    fallback = challenger & ~error & (rng.random(n) < 0.0005)
    answered = np.where(fallback | ~challenger, "champion", "challenger")
    ids = _hex_ids(rng, n)
    predictions = pa.table({
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "request_id": ids,
        "endpoint": pa.array(np.full(n, ENDPOINT)),
        "arm": pa.array(answered),
        "role": pa.array(np.where(answered == "champion", "champion", "canary")),
        "model_version": pa.array(np.where(answered == "champion", "flight_delay:3", "flight_delay:4")),
        "unit": pa.array(np.char.add("user-", unit.astype(str))),
        "stratum": pa.nulls(n, pa.string()),
        "status": pa.array(np.where(error, "error", np.where(fallback, "fallback", "ok"))),
        "shadow": pa.array(np.zeros(n, bool)),
        "shadow_of": pa.nulls(n, pa.string()),
        "latency_ms": rng.gamma(2.0, np.where(challenger, 4.2, 4.0)),
        "propensity": pa.nulls(n, pa.float64()),
        "fallback_from": pa.array(np.where(fallback, "challenger", None), pa.string()),
        "error": pa.array(np.where(error, "ModelError", None), pa.string()),
        "violations": pa.nulls(n, pa.string()),
        "protocol": pa.array(np.full(n, "native")),
        "feature_versions": pa.array(np.full(n, '{"flights": "9b1c", "weather": "77aa"}')),
        "row": pa.array(np.zeros(n, np.int64)),
        "output": pa.array(np.where(error, np.nan, output), mask=error),
        "feature.distance": rng.gamma(2.0, 500.0, n),
        "feature.dep_hour": rng.integers(5, 23, n).astype(np.float64),
        "feature.origin": pa.array(rng.choice(["EWR", "JFK", "LGA"], n)),
        "entity.carrier": pa.array(rng.choice(["UA", "B6", "EV", "DL", "AA", "MQ"], n)),
    })  # fmt: skip
    labelled = rng.random(n) < 0.95
    labels = pa.table({
        "time": pa.array(times[labelled] + 3_600_000_000, pa.timestamp("us", tz="UTC")),
        "endpoint": pa.array(np.full(int(labelled.sum()), ENDPOINT)),
        "request_id": ids.filter(pa.array(labelled)),
        "label": pa.array(y[labelled]),
        "source": pa.array(np.full(int(labelled.sum()), "feedback")),
    })  # fmt: skip
    return predictions, labels


def build(state: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per_hour = rows // HOURS
    for h in range(HOURS):
        n = per_hour if h < HOURS - 1 else rows - per_hour * (HOURS - 1)
        start = START + timedelta(hours=h)
        predictions, labels = _hour(rng, start, n)
        later = start + timedelta(hours=1)
        for root, table, when in ((PREDICTIONS_DIR, predictions, start), (LABELS_DIR, labels, later)):  # fmt: skip
            directory = hour_dir(state / root, "endpoint", ENDPOINT, when.date(), when.hour)
            write_table(table, directory / f"{when:%Y%m%dT%H%M%S}-0.parquet")


# -- the pandas implementation --------------------------------------------------------------


def pandas_numbers(state: Path) -> dict[str, dict[str, float]]:
    """The same per-arm numbers and Welch test, the way a pandas user would compute them."""
    columns = ["time", "request_id", "row", "arm", "unit", "status", "fallback_from",
               "latency_ms", "output"]  # fmt: skip
    p = pd.read_parquet(state / PREDICTIONS_DIR / f"endpoint={ENDPOINT}", columns=columns)
    labels = pd.read_parquet(state / LABELS_DIR / f"endpoint={ENDPOINT}",
                             columns=["time", "request_id", "label"])  # fmt: skip
    latest = labels.sort_values("time", kind="stable").drop_duplicates("request_id", keep="last")
    p = p.merge(latest[["request_id", "label"]], on="request_id", how="left")
    p["assigned"] = p["fallback_from"].fillna(p["arm"])
    p["error"] = p["status"] == "error"
    p["fell_back"] = p["fallback_from"].notna()
    own = p["fallback_from"].isna() & p["output"].notna() & p["label"].notna()
    y, score = p["label"].astype(float), p["output"]
    p["loss"] = np.where(own, -np.log(np.clip(np.where(y == 1, score, 1 - score), EPS, 1 - EPS)), np.nan)  # fmt: skip
    g = p.groupby("assigned")
    out = pd.DataFrame({
        "records": g.size(), "requests": g["request_id"].nunique(), "units": g["unit"].nunique(),
        "error_rate": g["error"].mean(), "fallback_rate": g["fell_back"].mean(),
        "p50": g["latency_ms"].quantile(0.5), "p95": g["latency_ms"].quantile(0.95),
        "p99": g["latency_ms"].quantile(0.99), "latency_mean": g["latency_ms"].mean(),
        "n": g["loss"].count(), "mean": g["loss"].mean(), "variance": g["loss"].var(ddof=1),
    })  # fmt: skip
    c, a = out.loc["champion"], out.loc["challenger"]
    welch = stats.ttest_ind_from_stats(a["mean"], math.sqrt(a["variance"]), a["n"],
                                       c["mean"], math.sqrt(c["variance"]), c["n"],
                                       equal_var=False)  # fmt: skip
    numbers = {arm: {k: float(v) for k, v in row.items()} for arm, row in out.iterrows()}
    numbers["welch"] = {"statistic": float(welch.statistic), "pvalue": float(welch.pvalue)}
    return numbers


def analysis_numbers(result: ExperimentAnalysis) -> dict[str, dict[str, float]]:
    numbers: dict[str, dict[str, float]] = {}
    for arm in result.arms:
        numbers[arm.arm] = {
            "records": arm.records, "requests": arm.requests, "units": arm.units,
            "error_rate": arm.error_rate, "fallback_rate": arm.fallback_rate,
            "p50": arm.latency_p50_ms, "p95": arm.latency_p95_ms, "p99": arm.latency_p99_ms,
            "latency_mean": arm.latency_mean_ms, "n": arm.metric["n"],
            "mean": arm.metric["mean"], "variance": arm.metric["variance"],
        }  # fmt: skip
    test = result.comparison("challenger").test or {}
    numbers["welch"] = {"statistic": test.get("statistic", math.nan),
                        "pvalue": test.get("pvalue", math.nan)}  # fmt: skip
    return numbers


def disagreements(ours: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]]) -> list[str]:  # fmt: skip
    out = []
    for group, values in theirs.items():
        for name, expected in values.items():
            got = ours[group][name]
            if not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
                out.append(f"{group}.{name}: analysis {got!r}, pandas {expected!r}")
    return out


# -- timing -----------------------------------------------------------------------------------


def analyse(logs: LogStores) -> ExperimentAnalysis:
    return analyze_experiment(
        logs, ENDPOINT, guardrails=GUARDRAILS,
        expected_weights={"champion": 0.5, "challenger": 0.5},
    )  # fmt: skip


def store_reads(logs: LogStores) -> float:
    """Seconds the store takes to hand the analysis its columns (both logs)."""
    t0 = time.perf_counter()
    logs.predictions.read(endpoint=ENDPOINT, columns=list(COLUMNS))
    logs.labels.read(endpoint=ENDPOINT, columns=list(LABEL_COLUMNS))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="1M rows")
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    rows = 1_000_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="prodml-bench-analysis-") as tmp:
        state = Path(tmp) / ".prodml"
        t0 = time.perf_counter()
        build(state, rows)
        print(f"wrote {rows:,} predictions and their labels in {time.perf_counter() - t0:.1f} s")
        logs = open_log_stores(state)
        results: dict[str, Any] = {}

        def side(name: str, work: Callable[[], Any]) -> Callable[[], float]:
            def run() -> float:
                t0 = time.perf_counter()
                results[name] = work()
                return time.perf_counter() - t0

            return run

        rounds = interleaved(
            args.runs,
            {"analysis": side("analysis", lambda: analyse(logs)),
             "pandas": side("pandas", lambda: pandas_numbers(state))},
        )  # fmt: skip
        read_s = min(store_reads(logs) for _ in range(args.runs))
    problems = disagreements(analysis_numbers(results["analysis"]), results["pandas"])
    ours, theirs = summary(rounds["analysis"]), summary(rounds["pandas"])
    figures = {
        "rows": rows,
        "cores": os.cpu_count(),
        "analysis_s": ours,
        "pandas_s": theirs,
        "store_reads_best_s": round(read_s, 3),
        "ratio_pandas_to_analysis": round(theirs["median"] / ours["median"], 2),
        "numbers_agree": not problems,
        "disagreements": problems[:10],
        "target_s": TARGET_S if rows >= 10_000_000 else None,
        "meets_target": ours["median"] <= TARGET_S if rows >= 10_000_000 else None,
    }
    print(f"analysis: median {ours['median']:.2f} s, min {ours['min']:.2f} s "
          f"(store reads {read_s:.2f} s); pandas: median {theirs['median']:.2f} s; "
          f"ratio {figures['ratio_pandas_to_analysis']}x; numbers agree: {not problems}; "
          f"load {load_average()}")  # fmt: skip
    for problem in problems:
        print("  DISAGREE", problem)
    if rows >= 10_000_000:
        met = "met" if figures["meets_target"] else "NOT met"
        note = f"target ≤ {TARGET_S:g} s at 10M on 2 cores: {met}"
    else:
        note = f"{rows / 1e6:g}M rows; the 3 s target is at 10M"
    if problems:
        note += f"; {len(problems)} numbers DISAGREE"
    emit(figures, [Row("experiment analysis", f"{rows / 1e6:g}M records + labels", ours["median"],
                       "pandas", theirs["median"], "s", None, note)])  # fmt: skip
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
