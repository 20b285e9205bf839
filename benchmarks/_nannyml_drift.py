"""NannyML 0.13.1 side of the drift benchmark; run by the NannyML venv's interpreter.

It never imports prodml: only nannyml, pandas, numpy, pyarrow and the standard library.
``benchmarks/drift.py`` runs it in the venv ``_peers`` creates. Two modes, each printing
one JSON line on stdout:

``python _nannyml_drift.py timed REFERENCE.parquet CURRENT.parquet``
    The timed run. Reads both Parquet files into pandas, fits a
    ``UnivariateDriftCalculator`` on the reference and calculates it on the current
    window as a single chunk (``chunk_number=1``), with the statistics prodml scores by
    default: ``wasserstein`` on the continuous (``num_*``) columns and
    ``jensen_shannon`` on the categorical (``cat_*``, string) ones, everything else as
    NannyML's documentation sets it up (default thresholds and ``computation_params``:
    at this size its Wasserstein is the ``estimated`` one, over ``rows // 500``
    equal-width reference bins). Prints ``seconds_total`` (reads, fit, calculate and
    reading the results back), ``seconds_read``, ``seconds_import``, ``peak_rss_mib``
    and ``columns`` (per column: ``method``, ``score``, ``drifted`` = NannyML's alert).

``python _nannyml_drift.py agree REFERENCE.parquet CURRENT.parquet``
    Untimed, for agreement with prodml's statistics: continuous columns with
    ``wasserstein`` and ``kolmogorov_smirnov`` computed ``exact``
    (``computation_params``), categorical ones with ``jensen_shannon`` and ``chi2``.
    Prints ``columns`` with one score per method.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
_T_IMPORT = time.perf_counter()

import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402

SECONDS_IMPORT = time.perf_counter() - _T_IMPORT

USAGE = (
    "usage: python _nannyml_drift.py timed REFERENCE.parquet CURRENT.parquet\n"
    "       python _nannyml_drift.py agree REFERENCE.parquet CURRENT.parquet"
)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _calculator(
    columns: list[str], continuous: list[str], categorical: list[str], exact: bool
) -> Any:
    # 0.13.1 checks that the method's name is a key of computation_params, then reads
    # calculation_method from the top level of the dict: both places are set.
    params = (
        {
            "wasserstein": {"calculation_method": "exact"},
            "kolmogorov_smirnov": {"calculation_method": "exact"},
            "calculation_method": "exact",
        }
        if exact
        else None
    )
    return nml.UnivariateDriftCalculator(
        column_names=columns,
        treat_as_categorical=[c for c in columns if c.startswith("cat_")],
        continuous_methods=continuous,
        categorical_methods=categorical,
        chunk_number=1,
        computation_params=params,
    )


def _read(result: Any, columns: list[str], continuous: list[str], categorical: list[str]) -> dict:
    data = result.filter(period="analysis").to_df()
    if len(data) != 1:
        raise RuntimeError(f"expected one analysis chunk, got {len(data)}")
    out: dict[str, Any] = {}
    for column in columns:
        methods = categorical if column.startswith("cat_") else continuous
        out[column] = {
            m: {
                "score": float(data[(column, m, "value")].iloc[0]),
                "drifted": bool(data[(column, m, "alert")].iloc[0]),
            }
            for m in methods
        }
    return out


def run(reference_path: str, current_path: str, agree: bool) -> dict[str, Any]:
    continuous = ["wasserstein", "kolmogorov_smirnov"] if agree else ["wasserstein"]
    categorical = ["jensen_shannon", "chi2"] if agree else ["jensen_shannon"]
    c0, t0 = time.process_time(), time.perf_counter()
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    t1 = time.perf_counter()
    columns = [c for c in reference.columns if c.startswith(("num_", "cat_"))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calculator = _calculator(columns, continuous, categorical, exact=agree)
        calculator.fit(reference)
        result = calculator.calculate(current)
        scores = _read(result, columns, continuous, categorical)
    t2 = time.perf_counter()
    return {
        "seconds_total": t2 - t0,
        "cpu_seconds": time.process_time() - c0,
        "seconds_read": t1 - t0,
        "seconds_import": SECONDS_IMPORT,
        "peak_rss_mib": _peak_rss_mib(),
        "version": nml.__version__,
        "columns": {
            c: {"method": next(iter(v)), **next(iter(v.values())), "all": v}
            for c, v in scores.items()
        },
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("timed", "agree"):
        print(USAGE, file=sys.stderr)
        return 2
    print(json.dumps(run(argv[1], argv[2], agree=argv[0] == "agree")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
