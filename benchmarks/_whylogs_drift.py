"""whylogs 1.6.4 side of the drift benchmark; run by the whylogs venv's interpreter.

It never imports prodml: only whylogs, pandas, numpy, pyarrow and the standard library.
``benchmarks/drift.py`` runs it in the venv ``_peers`` creates:

``python _whylogs_drift.py timed REFERENCE.parquet CURRENT.parquet``
    Reads both Parquet files into pandas, profiles each (``why.log(frame).view()``:
    KLL quantile sketches for numbers, frequent-items sketches for strings) and compares
    the two profiles with whylogs' own drift comparison, ``calculate_drift_scores``
    (``target_view`` = current, ``reference_view`` = reference, ``with_thresholds``),
    using its default algorithm per column (whichever it chooses: it works on the
    sketches, not on the rows, so its statistics are not prodml's). Prints
    ``seconds_total`` (reads, both profiles and the drift scores), ``seconds_read``,
    ``seconds_profile``, ``seconds_import``, ``peak_rss_mib`` and ``columns`` (per
    column: ``method``, ``score`` = its statistic, ``pvalue`` where it has one,
    ``drifted`` = its category is ``DRIFT``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
_T_IMPORT = time.perf_counter()

import pandas as pd  # noqa: E402
import whylogs as why  # noqa: E402

try:  # 1.6.x keeps the drift algorithms under whylogs.viz
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores
except ImportError:  # pragma: no cover - later layouts
    from whylogs.drift.column_drift_algorithms import calculate_drift_scores

SECONDS_IMPORT = time.perf_counter() - _T_IMPORT

USAGE = "usage: python _whylogs_drift.py timed REFERENCE.parquet CURRENT.parquet"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def run(reference_path: str, current_path: str) -> dict[str, Any]:
    c0, t0 = time.process_time(), time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_view = why.log(reference).view()
        current_view = why.log(current).view()
        t2 = time.perf_counter()
        scores = calculate_drift_scores(
            target_view=current_view, reference_view=reference_view, with_thresholds=True
        )
    t3 = time.perf_counter()
    columns: dict[str, Any] = {}
    for name, score in scores.items():
        if not score:
            columns[name] = {"method": None, "score": None, "pvalue": None, "drifted": None}
            continue
        columns[name] = {
            "method": score.get("algorithm"),
            "score": _number(score.get("statistic")),
            "pvalue": _number(score.get("pvalue")),
            "drifted": score.get("drift_category") == "DRIFT",
            "category": score.get("drift_category"),
        }
    return {
        "seconds_total": t3 - t0,
        "cpu_seconds": time.process_time() - c0,
        "seconds_read": t1 - t0,
        "seconds_profile": t2 - t1,
        "seconds_compare": t3 - t2,
        "seconds_import": SECONDS_IMPORT,
        "peak_rss_mib": _peak_rss_mib(),
        "version": why.__version__ if hasattr(why, "__version__") else "?",
        "columns": columns,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "timed":
        print(USAGE, file=sys.stderr)
        return 2
    print(json.dumps(run(argv[1], argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
