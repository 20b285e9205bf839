"""Evidently 0.7.23 side of the monitoring pass of ``benchmarks/scale_logs.py``; run by
the Evidently venv's interpreter (``_peers``), never importing prodml.

Reads one JSON object on stdin: ``reference`` (a Parquet file of the reference rows, one
column per feature), ``columns`` (log column → feature name, e.g. ``feature.temp`` →
``temp``) and ``windows`` (a list of ``{"start": ISO time, "files": [Parquet files]}``).
For each window, in turn: ``pd.read_parquet`` of each of the window's files (those
columns only, no hive partition columns) concatenated, then ``Report([DataDriftPreset(num_method="wasserstein", threshold=0.1)])``
against the reference (every feature declared numerical), and the per-column drift
score read back from the snapshot. Prints one JSON line: ``seconds_total`` (reads
included, imports excluded), ``cpu_seconds``, ``seconds_read``, ``peak_rss_mib``
(``VmHWM``), ``rows`` (records read) and ``windows`` (start → column → score).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from _peers import peak_rss_mb  # this folder is the script's: sys.path[0]


def _scores(snapshot: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in snapshot["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            out[config["column"]] = float(metric["value"])
    return out


def main() -> None:
    job = json.loads(sys.stdin.read())
    columns: dict[str, str] = job["columns"]
    features = list(columns.values())
    c0, t0 = time.process_time(), time.perf_counter()
    reference = pd.read_parquet(job["reference"], columns=features)
    definition = DataDefinition(numerical_columns=features)
    ref_data = Dataset.from_pandas(reference, data_definition=definition)
    windows: dict[str, dict[str, float]] = {}
    rows = 0
    read_s = 0.0
    for window in job["windows"]:
        r0 = time.perf_counter()
        parts = [
            pd.read_parquet(f, columns=list(columns), partitioning=None) for f in window["files"]
        ]
        current = (parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)).rename(
            columns=columns
        )
        del parts
        read_s += time.perf_counter() - r0
        rows += len(current)
        report = Report([DataDriftPreset(num_method="wasserstein", threshold=0.1)])
        snapshot = report.run(Dataset.from_pandas(current, data_definition=definition), ref_data)
        windows[window["start"]] = _scores(snapshot.dict())
        del current, snapshot
    print(
        json.dumps(
            {
                "seconds_total": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0,
                "seconds_read": read_s,
                "peak_rss_mib": peak_rss_mb(),
                "rows": rows,
                "windows": windows,
            }
        )
    )


if __name__ == "__main__":
    main()
