"""Evidently 0.7.23 side of the drift benchmark; run by the Evidently venv's interpreter.

It never imports prodml: only evidently, pandas (< 3), numpy, scipy, pyarrow and the
standard library. ``benchmarks/drift.py`` runs it in the venv ``_peers`` creates. Two modes,
each printing one JSON line on stdout:

``python _evidently_drift.py preset REFERENCE.parquet CURRENT.parquet``
    Runs ``Report([DataDriftPreset()], include_tests=True)`` over every column, with
    ``num_*`` columns declared numerical and ``cat_*`` categorical in a
    ``DataDefinition`` (any other column is an error), and Evidently's default choice
    of stattest and threshold per column. Prints ``seconds_total`` (reading both parquet
    files, building the datasets, the report and reading its results back),
    ``seconds_compute`` (the same without the reads), ``seconds_read``,
    ``seconds_import`` (importing evidently, before either timer), ``peak_rss_mib``
    (``ru_maxrss`` of this process), ``rows_reference``, ``rows_current``, ``columns``
    (per column: the registered stattest ``method`` name, its drift ``score``,
    ``threshold`` and whether Evidently's test for it failed, ``drifted``) and
    ``share_drifted`` (the preset's ``DriftedColumnsCount`` share).

``python _evidently_drift.py parity REFERENCE.parquet CURRENT.parquet``
    Every row of both files (the timed size, no sample). Each ``num_*``/``cat_*``
    column is cleaned as Evidently's ``get_one_column_drift`` does (±inf to NaN, NaN
    dropped), then scored by Evidently's own stattest functions: numeric pairs by
    ``_wasserstein_distance_norm`` and ``_jensenshannon`` (``ColumnType.Numerical``),
    categorical pairs by ``_jensenshannon`` (``ColumnType.Categorical``). For each pair
    it also prints the binning Evidently's ``get_binned_data`` used for Jensen-Shannon:
    ``binning`` is ``"sturges"`` with the ``edges`` over reference+current, or
    ``"categories"`` with the sorted ``keys`` (a numeric column with at most 20 distinct
    reference values is binned that way too), plus ``ref_percents``/``cur_percents``
    aligned with them. Output: ``numeric`` and ``categorical``, each a mapping from
    column name to those figures.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

_T_IMPORT = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon  # noqa: E402
from evidently.legacy.calculations.stattests.registry import (  # noqa: E402
    _registered_stat_tests,
)
from evidently.legacy.calculations.stattests.utils import (  # noqa: E402
    get_binned_data,
    get_unique_not_nan_values_list_from_series,
)
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import (  # noqa: E402
    _wasserstein_distance_norm,
)
from evidently.legacy.core import ColumnType  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

SECONDS_IMPORT = time.perf_counter() - _T_IMPORT

# Evidently's own threshold when the caller gives none (both tests' default is 0.1);
# it only decides the ``drifted`` flag, which parity mode does not print.
_THRESHOLD = 0.1
# Evidently's jensenshannon default; unused for numeric data binned with 'sturges'.
_N_BINS = 30

USAGE = (
    "usage: python _evidently_drift.py preset REFERENCE.parquet CURRENT.parquet\n"
    "       python _evidently_drift.py parity REFERENCE.parquet CURRENT.parquet"
)


def _peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _stattest_names() -> dict[str, str]:
    """Map each registered stattest's display name (what a 0.7 result shows) to its name."""
    names: dict[str, str] = {}
    for by_type in _registered_stat_tests.values():
        for stattest in by_type.values():
            names[stattest.display_name] = stattest.name
    return names


def _definition(columns: list[str]) -> DataDefinition:
    numerical = [c for c in columns if c.startswith("num_")]
    categorical = [c for c in columns if c.startswith("cat_")]
    other = [c for c in columns if c not in numerical and c not in categorical]
    if other:
        raise SystemExit(f"columns must start with 'num_' or 'cat_'; got {other}")
    return DataDefinition(numerical_columns=numerical, categorical_columns=categorical)


def _parse_snapshot(result: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], float]:
    """Per-column drift and the drifted share from ``Snapshot.dict()``.

    ``metrics`` holds one ``DriftedColumnsCount`` (``value: {count, share}``) and one
    ``ValueDrift`` per column (``config: {column, method: display name, threshold}``,
    ``value: score``); ``tests`` holds, per ``ValueDrift``, a test whose
    ``metric_config.metric_id`` names it and whose ``status`` is ``FAIL`` when
    Evidently detected drift.
    """
    names = _stattest_names()
    status = {
        test["metric_config"]["metric_id"]: test["status"]
        for test in result.get("tests", [])
        if test.get("id") == "drift" and "metric_config" in test
    }
    columns: dict[str, dict[str, Any]] = {}
    share: float | None = None
    for metric in result["metrics"]:
        kind = metric.get("config", {}).get("type", "")
        if kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith(":ValueDrift"):
            config = metric["config"]
            if metric["id"] not in status:
                raise RuntimeError(f"no drift test result for column {config['column']!r}")
            display = config["method"]
            columns[config["column"]] = {
                "method": names.get(display, display),
                "score": float(metric["value"]),
                "threshold": float(config["threshold"]),
                "drifted": status[metric["id"]] == "FAIL",
            }
    if share is None:
        raise RuntimeError("the report has no DriftedColumnsCount result")
    return columns, share


def run_preset(reference_path: str, current_path: str) -> dict[str, Any]:
    c0, t0 = time.process_time(), time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    t1 = time.perf_counter()
    definition = _definition(list(reference.columns))
    report = Report([DataDriftPreset()], include_tests=True)
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    t2 = time.perf_counter()
    columns, share = _parse_snapshot(result)
    return {
        "seconds_total": t2 - t0,
        "cpu_seconds": time.process_time() - c0,
        "seconds_compute": t2 - t1,
        "seconds_read": t1 - t0,
        "seconds_import": SECONDS_IMPORT,
        "peak_rss_mib": _peak_rss_mib(),
        "rows_reference": len(reference),
        "rows_current": len(current),
        "columns": columns,
        "share_drifted": share,
    }


def _clean(values: np.ndarray) -> pd.Series:
    """What ``get_one_column_drift`` does to a column before its stattest."""
    return pd.Series(values).replace([-np.inf, np.inf], np.nan).dropna().reset_index(drop=True)


def _binning(reference: pd.Series, current: pd.Series, feature_type: ColumnType) -> dict[str, Any]:
    """The bins and percents ``_jensenshannon`` uses, checked against ``get_binned_data``."""
    ref_pct, cur_pct = get_binned_data(reference, current, feature_type, _N_BINS, False)
    if feature_type == ColumnType.Numerical and reference.nunique() > 20:
        combined = np.asarray(pd.concat([reference, current], axis=0).values)
        edges = np.histogram_bin_edges(combined, bins="sturges")
        mine = (
            np.histogram(reference, edges)[0] / len(reference),
            np.histogram(current, edges)[0] / len(current),
        )
        if not (np.array_equal(mine[0], ref_pct) and np.array_equal(mine[1], cur_pct)):
            raise RuntimeError("sturges edges do not reproduce get_binned_data's percents")
        return {
            "binning": "sturges",
            "edges": edges.tolist(),
            "ref_percents": ref_pct.tolist(),
            "cur_percents": cur_pct.tolist(),
        }
    # Same call, same process: the same set, iterated in the order get_binned_data saw.
    keys = get_unique_not_nan_values_list_from_series(
        current_data=current, reference_data=reference
    )
    ref_counts = reference.value_counts()
    cur_counts = current.value_counts()
    mine = (
        np.array([ref_counts.get(k, 0) / len(reference) for k in keys]),
        np.array([cur_counts.get(k, 0) / len(current) for k in keys]),
    )
    if not (np.array_equal(mine[0], ref_pct) and np.array_equal(mine[1], cur_pct)):
        raise RuntimeError("category keys do not reproduce get_binned_data's percents")
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    return {
        "binning": "categories",
        "keys": [keys[i].item() if isinstance(keys[i], np.generic) else keys[i] for i in order],
        "ref_percents": [float(ref_pct[i]) for i in order],
        "cur_percents": [float(cur_pct[i]) for i in order],
    }


def run_parity(reference_path: str, current_path: str) -> dict[str, Any]:
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    _definition(list(reference.columns))  # the same column naming rule as the preset
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    for column in reference.columns:
        if column.startswith("num_"):
            ref = _clean(reference[column].to_numpy(dtype=np.float64))
            cur = _clean(current[column].to_numpy(dtype=np.float64))
            wd, _ = _wasserstein_distance_norm(ref, cur, ColumnType.Numerical, _THRESHOLD)
            js, _ = _jensenshannon(ref, cur, ColumnType.Numerical, _THRESHOLD)
            numeric[column] = {
                "wasserstein_norm": float(wd),
                "js": float(js),
                "n_ref": len(ref),
                "n_cur": len(cur),
                **_binning(ref, cur, ColumnType.Numerical),
            }
        else:
            ref = _clean(reference[column].astype(str).to_numpy(dtype=object))
            cur = _clean(current[column].astype(str).to_numpy(dtype=object))
            js, _ = _jensenshannon(ref, cur, ColumnType.Categorical, _THRESHOLD)
            categorical[column] = {
                "js": float(js),
                "n_ref": len(ref),
                "n_cur": len(cur),
                **_binning(ref, cur, ColumnType.Categorical),
            }
    return {"numeric": numeric, "categorical": categorical}


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "preset":
        out = run_preset(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "parity":
        out = run_parity(argv[1], argv[2])
    else:
        print(USAGE, file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
