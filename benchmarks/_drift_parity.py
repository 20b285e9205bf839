"""Parity checks of ``benchmarks/drift.py``, at the timed size (every row, every column).

* :func:`side_bounds` (run in a child process of the main venv, untimed) fits prodml's
  exact profiles (``resolution=0``) and the default, compacted ones of every column of
  the reference and the current table, and returns per column the exact and compacted
  statistics and the compaction's error bound:

  ``NumericProfile.fit`` compacts a column of ``n`` finite values with more than
  ``DEFAULT_RESOLUTION`` (``L``) distinct values into ``L`` runs of consecutive sorted
  rows, each at most ``ceil(n / L)`` rows wide, each kept as one of its own values
  (its median). Moving every row to its run's value is a transport plan, so the
  Wasserstein distance between the exact and the compacted distribution is at most
  ``Σ_runs (width / n) · (run max − run min) ≤ ceil(n / L) / n · (max − min)``. By the
  triangle inequality the statistic between two compacted profiles differs from the
  exact one by at most the sum of both sides' bounds (0 for a side kept exact), and
  the normed statistic by that sum over ``max(reference std, 0.001)`` (the moments are
  exact either way).

* :func:`check_bounds` checks the timed (compacted) values and the timed exact path
  against those figures; :func:`evidently_parity` checks prodml against Evidently's
  stattests at full size; :func:`agreement` compares prodml with NannyML.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

PARITY = 1e-6  # largest relative difference allowed against Evidently's SciPy numbers


def _rel(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return math.inf
    return abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0


def side_bounds(reference: str, current: str) -> dict[str, Any]:
    """Exact and compacted statistics of every column, and the compaction bound."""
    from prodml.monitoring import ParquetColumns
    from prodml.stats import (
        CategoricalProfile,
        NumericProfile,
        aligned,
        chi_square,
        jensen_shannon,
        ks,
        wasserstein,
    )
    from prodml.stats._numeric_drift import _MIN_STD, DEFAULT_RESOLUTION

    ref_cols, cur_cols = ParquetColumns([reference]), ParquetColumns([current])
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    limit = DEFAULT_RESOLUTION
    for column in ref_cols.column_names:
        if column.startswith("num_"):
            ref_x = ref_cols[column].to_numpy()
            cur_x = cur_cols[column].to_numpy()
            ref_e = NumericProfile.fit(ref_x, resolution=0)
            cur_e = NumericProfile.fit(cur_x, resolution=0)
            ref_c = NumericProfile.fit(ref_x)
            cur_c = NumericProfile.fit(cur_x)

            def move(profile: NumericProfile) -> float:
                if profile.exact:
                    return 0.0
                return math.ceil(profile.n / limit) / profile.n * (profile.max - profile.min)

            scale = max(ref_e.std, _MIN_STD)
            numeric[column] = {
                "exact": wasserstein(ref_e, cur_e, normed=True),
                "compacted": wasserstein(ref_c, cur_c, normed=True),
                "bound": (move(ref_c) + move(cur_c)) / scale,
                "compacted_sides": [not ref_c.exact, not cur_c.exact],
                "wasserstein_raw": wasserstein(ref_e, cur_e),
                "ks_statistic": ks(ref_e, cur_e)[0],
                "reference_std": ref_e.std,
            }
        elif column.startswith("cat_"):
            ref_p = CategoricalProfile.fit(ref_cols[column])
            cur_p = CategoricalProfile.fit(cur_cols[column])
            _, p, q = aligned(ref_p, cur_p)
            statistic, pvalue = chi_square(ref_p, cur_p)
            categorical[column] = {
                "jensen_shannon": jensen_shannon(p, q),
                "chi2_statistic": statistic,
                "chi2_pvalue": pvalue,
            }
    return {"resolution": limit, "numeric": numeric, "categorical": categorical}


def check_bounds(
    bounds: dict[str, Any], timed: dict[str, Any], timed_exact: dict[str, Any]
) -> dict[str, Any]:
    """Every timed compacted value within the bound of the exact value; the timed exact
    path equal to the exact value; categorical (always exact) values equal."""
    per_column: dict[str, Any] = {}
    ok = True
    worst_ratio = 0.0
    worst_rel = 0.0
    for column, b in bounds["numeric"].items():
        value = timed["columns"][column]["score"]
        exact_path = timed_exact["columns"][column]["score"]
        error = abs(value - b["exact"])
        within = error <= b["bound"] * (1 + 1e-9) + 1e-12
        exact_equal = _rel(exact_path, b["exact"]) <= 1e-12
        same_as_untimed = _rel(value, b["compacted"]) <= 1e-12
        ok &= within and exact_equal and same_as_untimed
        if b["bound"] > 0:
            worst_ratio = max(worst_ratio, error / b["bound"])
        worst_rel = max(worst_rel, _rel(value, b["exact"]))
        per_column[column] = {
            "timed": value,
            "exact": b["exact"],
            "abs_error": error,
            "bound": b["bound"],
            "within": within,
            "exact_path_equal": exact_equal,
        }
    for column, b in bounds["categorical"].items():
        for side in (timed, timed_exact):
            equal = _rel(side["columns"][column]["score"], b["jensen_shannon"]) <= 1e-12
            ok &= equal
        per_column[column] = {
            "timed": timed["columns"][column]["score"],
            "exact": b["jensen_shannon"],
        }
    largest_bound = max((b["bound"] for b in bounds["numeric"].values()), default=0.0)
    return {
        "pass": ok,
        "columns": per_column,
        "summary": {
            "pass": ok,
            "largest_error_over_bound": round(worst_ratio, 4),
            "largest_relative_error_vs_exact": worst_rel,
            "largest_bound_normed": largest_bound,
            "resolution": bounds["resolution"],
        },
    }


def _shares(row: dict[str, Any], ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares of ``ref`` and ``cur`` over the bins Evidently used (its Sturges edges, or
    its category keys for categorical and low-cardinality numeric columns)."""
    if row["binning"] == "sturges":
        edges = np.asarray(row["edges"], dtype=np.float64)
        return np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)
    keys = np.asarray(row["keys"]).astype(ref.dtype)
    out = []
    for values in (ref, cur):
        uniq, counts = np.unique(values, return_counts=True)
        lookup = dict(zip(uniq.tolist(), counts.tolist(), strict=True))
        out.append(np.array([lookup.get(k, 0) for k in keys.tolist()]) / len(values))
    return out[0], out[1]


def evidently_parity(
    theirs: dict[str, Any],
    paths: dict[str, Path],
    timed: dict[str, Any],
    timed_exact: dict[str, Any],
    numeric: list[str],
    categorical: list[str],
) -> dict[str, Any]:
    """prodml's exact normed Wasserstein and timed categorical Jensen–Shannon against
    Evidently's, and prodml's ``jensen_shannon`` over Evidently's numeric bins."""
    from prodml.stats import jensen_shannon

    ref = pq.read_table(paths["reference"], columns=numeric)
    cur = pq.read_table(paths["current"], columns=numeric)
    worst = {"wasserstein_norm_exact": 0.0, "js_numeric_same_bins": 0.0, "js_categorical": 0.0}
    timed_vs_evidently = 0.0
    for column in numeric:
        row = theirs["numeric"][column]
        worst["wasserstein_norm_exact"] = max(
            worst["wasserstein_norm_exact"],
            _rel(timed_exact["columns"][column]["score"], row["wasserstein_norm"]),
        )
        timed_vs_evidently = max(
            timed_vs_evidently, _rel(timed["columns"][column]["score"], row["wasserstein_norm"])
        )
        p, q = _shares(row, ref[column].to_numpy(), cur[column].to_numpy())
        worst["js_numeric_same_bins"] = max(
            worst["js_numeric_same_bins"], _rel(jensen_shannon(p, q), row["js"])
        )
    for column in categorical:
        worst["js_categorical"] = max(
            worst["js_categorical"],
            _rel(timed["columns"][column]["score"], theirs["categorical"][column]["js"]),
        )
    return {
        "max_relative_difference": worst,
        "timed_compacted_vs_evidently_relative": timed_vs_evidently,
        "rows": theirs["numeric"][numeric[0]]["n_ref"],
        "pass": max(worst.values()) <= PARITY,
    }


def agreement(
    bounds: dict[str, Any], agree: dict[str, Any], timed_nannyml: dict[str, Any]
) -> dict[str, Any]:
    """prodml's exact statistics against NannyML's where both compute the same one."""
    sqrt_ln2 = math.sqrt(math.log(2))
    worst = {
        "wasserstein_exact": 0.0,
        "wasserstein_estimated_default": 0.0,
        "ks_statistic_exact": 0.0,
        "js_categorical_base2": 0.0,
        "chi2_statistic": 0.0,
    }
    for column, b in bounds["numeric"].items():
        theirs = agree["columns"][column]["all"]
        worst["wasserstein_exact"] = max(
            worst["wasserstein_exact"], _rel(b["wasserstein_raw"], theirs["wasserstein"]["score"])
        )
        worst["ks_statistic_exact"] = max(
            worst["ks_statistic_exact"],
            _rel(b["ks_statistic"], theirs["kolmogorov_smirnov"]["score"]),
        )
        worst["wasserstein_estimated_default"] = max(
            worst["wasserstein_estimated_default"],
            _rel(b["wasserstein_raw"], timed_nannyml["columns"][column]["score"]),
        )
    for column, b in bounds["categorical"].items():
        theirs = agree["columns"][column]["all"]
        worst["js_categorical_base2"] = max(
            worst["js_categorical_base2"],
            _rel(b["jensen_shannon"] / sqrt_ln2, theirs["jensen_shannon"]["score"]),
        )
        worst["chi2_statistic"] = max(
            worst["chi2_statistic"], _rel(b["chi2_statistic"], theirs["chi2"]["score"])
        )
    return {
        "max_relative_difference": worst,
        "note": "NannyML's Wasserstein is unnormed and, by default at >= 10k reference rows, "
        "estimated over rows // 500 equal-width bins; the others are exact",
    }
