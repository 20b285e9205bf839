"""Benchmark: prodml's data drift against Evidently's data-drift preset, same data, same run.

Data (cached under ``benchmarks/.data/drift-<rows>/``): a reference and a current table
of N rows each (1M, or 100k with ``--quick``) with 20 numeric columns (``num_0`` …
``num_19``: normal, log-normal, uniform, exponential and Poisson counts) and 5
categorical ones (``cat_0`` … ``cat_4``: 4 to 200 string categories), as Parquet. The
current table has drift injected into some columns: a location shift of half a standard
deviation (``num_0``, ``num_1``), a 1.5× scale change (``num_2``), 5% outliers at 8
standard deviations (``num_3``), a Poisson rate change (``num_4``), category
reweighting (``cat_0``) and a new category taking 10% (``cat_1``); the rest is drawn
from the reference's distributions.

Each tool runs in a child process of its own, which reports its wall time and its peak
resident memory (``ru_maxrss``):

* **prodml**: ``DriftReference.fit`` over the reference Parquet (numeric profiles with
  reference-decile bins), then ``score_drift`` over the current Parquet with the
  defaults (normed Wasserstein for numeric columns, Jensen–Shannon for categorical
  ones, both with threshold 0.1), 2 threads; both read the file a column at a time
  (``ParquetColumns``), inside the timed section.
* **prodml, stored reference**: a new process loads the reference profile written by
  the first one (bytes on disk), reads a *new* current window (another draw of the same
  drifted distributions) and scores it: the per-window cost once a reference exists.
* **Evidently 0.7.23**: in its own virtual environment (it needs ``pandas<3``), read
  both Parquet files into pandas and run ``Report([DataDriftPreset()])`` with numeric and
  categorical columns declared; its defaults choose the same statistics at this size
  (normed Wasserstein and Jensen–Shannon, thresholds 0.1). ``--no-peer`` skips it.

Both tools' per-column verdicts are printed side by side (they use different binning
for categorical Jensen–Shannon only where categories differ). Parity of the statistics
themselves is checked on a 20,000-row sample of every column: Evidently's own stattest
functions against prodml's ``wasserstein(normed=True)`` (exact profiles) and
``jensen_shannon`` over the same bins Evidently used (its Sturges edges over both
samples for numeric columns, the union of categories for categorical ones): the largest
relative difference must stay ≤ 1e-6.

Targets (issue 5): prodml ≥ 50× faster than Evidently and ≤ ⅓ of its peak memory;
scoring a new 1M-row window against a stored reference ≤ 2 s on 2 cores.

    .venv/bin/python benchmarks/drift.py [--quick] [--no-peer]

The last stdout line is one JSON object with every figure, the targets and pass/fail.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _peers import peer_env, peer_python, run_json  # noqa: E402

NUMERIC = [f"num_{i}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
_CARDINALITY = [4, 12, 30, 80, 200]
EVIDENTLY = ["evidently==0.7.23", "pandas<3", "pyarrow"]


def _numeric(rng: np.random.Generator, i: int, n: int, drifted: bool) -> np.ndarray:
    kind = i % 5
    if kind == 0:
        x = rng.normal(10.0 * i, 1.0 + i / 10, n)
    elif kind == 1:
        x = rng.lognormal(1.0, 0.6, n)
    elif kind == 2:
        x = rng.uniform(-5.0, 5.0 + i, n)
    elif kind == 3:
        x = rng.exponential(2.0 + i / 5, n)
    else:
        x = rng.poisson(3.0 + i / 4, n).astype(np.float64)
    if drifted:
        std = float(np.std(x))
        if i in (0, 1):
            x = x + 0.5 * std
        elif i == 2:
            x = (x - x.mean()) * 1.5 + x.mean()
        elif i == 3:
            picks = rng.random(n) < 0.05
            x = np.where(picks, x.mean() + 8 * std, x)
        elif i == 4:
            x = rng.poisson(3.0 + i / 4 + 1.0, n).astype(np.float64)
    return x


def _categorical(rng: np.random.Generator, j: int, n: int, drifted: bool) -> pa.Array:
    k = _CARDINALITY[j]
    weights = 1.0 / np.arange(1, k + 1)  # Zipf-like
    labels = np.array([f"c{j}_{v:03d}" for v in range(k)] + [f"c{j}_new"])
    if drifted and j == 0:
        weights = weights[::-1]
    p = np.append(weights / weights.sum(), 0.0)
    if drifted and j == 1:
        p = np.append(p[:-1] * 0.9, 0.1)
    return pa.array(labels[rng.choice(k + 1, size=n, p=p)])


def make_table(n: int, seed: int, drifted: bool) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {c: _numeric(rng, i, n, drifted) for i, c in enumerate(NUMERIC)}
    columns.update({c: _categorical(rng, j, n, drifted) for j, c in enumerate(CATEGORICAL)})
    return pa.table(columns)


def ensure_data(rows: int) -> dict[str, Path]:
    root = HERE / ".data" / f"drift-{rows}"
    paths = {
        "reference": root / "reference.parquet",
        "current": root / "current.parquet",
        "next": root / "next.parquet",
    }
    if all(p.exists() for p in paths.values()):
        return paths
    root.mkdir(parents=True, exist_ok=True)
    for (name, path), (seed, drifted) in zip(
        paths.items(), [(1, False), (2, True), (3, True)], strict=True
    ):
        print(f"[data] writing {name} ({rows:,} rows)", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        pq.write_table(make_table(rows, seed, drifted), tmp, row_group_size=128 * 1024)
        tmp.replace(path)
    return paths


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def side_prodml(reference: str, current: str, profile_out: str) -> dict[str, Any]:
    """Fit the reference and score the current window, in this (child) process."""
    from prodml.monitoring import DriftReference, ParquetColumns, score_drift

    t0 = time.perf_counter()
    ref = DriftReference.fit(ParquetColumns([reference]), numeric=NUMERIC, categorical=CATEGORICAL)
    t1 = time.perf_counter()
    result = score_drift(ref, ParquetColumns([current]))
    t2 = time.perf_counter()
    Path(profile_out).write_bytes(ref.to_bytes())
    return {
        "seconds_total": t2 - t0,
        "seconds_fit": t1 - t0,
        "seconds_score": t2 - t1,
        "peak_rss_mib": _peak_mib(),
        "profile_bytes": Path(profile_out).stat().st_size,
        "columns": _columns(result),
        "share_drifted": result.share,
    }


def side_stored(profile: str, current: str) -> dict[str, Any]:
    """Score a new window against a stored reference profile, in this (child) process."""
    from prodml.monitoring import DriftReference, ParquetColumns, score_drift

    t0 = time.perf_counter()
    ref = DriftReference.from_bytes(Path(profile).read_bytes())
    t1 = time.perf_counter()
    result = score_drift(ref, ParquetColumns([current]))
    t2 = time.perf_counter()
    return {
        "seconds_total": t2 - t0,
        "seconds_load_profile": t1 - t0,
        "seconds_score": t2 - t1,
        "peak_rss_mib": _peak_mib(),
        "columns": _columns(result),
        "share_drifted": result.share,
    }


def _columns(result: Any) -> dict[str, Any]:
    return {
        c.column: {"method": c.method, "score": c.value, "drifted": c.drifted, "status": c.status}
        for c in result.columns
    }


def _child(args: list[str]) -> dict[str, Any]:
    return run_json([sys.executable, __file__, "--side", *args], what=f"child {args[0]}")


def _evidently(python: Path, *args: str) -> dict[str, Any]:
    return run_json(
        [str(python), str(HERE / "_evidently_drift.py"), *args],
        what=f"Evidently ({args[0]})",
        env=peer_env(),
    )


def parity(python: Path, paths: dict[str, Path], sample: int = 20_000) -> dict[str, Any]:
    """Evidently's normed Wasserstein and Jensen–Shannon against prodml's, same bins."""
    from prodml.stats import NumericProfile, jensen_shannon, wasserstein

    ref = pq.read_table(paths["reference"]).slice(0, sample)
    cur = pq.read_table(paths["current"]).slice(0, sample)
    arrays: dict[str, np.ndarray] = {}
    for i, c in enumerate(NUMERIC):
        arrays[f"ref_{i}"] = ref[c].to_numpy()
        arrays[f"cur_{i}"] = cur[c].to_numpy()
    for j, c in enumerate(CATEGORICAL):
        arrays[f"cref_{j}"] = np.asarray(ref[c].to_pylist(), dtype=str)
        arrays[f"ccur_{j}"] = np.asarray(cur[c].to_pylist(), dtype=str)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "parity.npz"
        np.savez(npz, **arrays)
        theirs = _evidently(python, "parity", str(npz))
    worst = {"wasserstein_norm": 0.0, "js_numeric": 0.0, "js_categorical": 0.0}
    for i, row in enumerate(theirs["numeric"]):
        ref_i, cur_i = arrays[f"ref_{i}"], arrays[f"cur_{i}"]
        ours_w = wasserstein(
            NumericProfile.fit(ref_i, resolution=0),
            NumericProfile.fit(cur_i, resolution=0),
            normed=True,
        )
        p, q = _evidently_bins(row, ref_i, cur_i)
        worst["wasserstein_norm"] = max(
            worst["wasserstein_norm"], _rel(ours_w, row["wasserstein_norm"])
        )
        worst["js_numeric"] = max(worst["js_numeric"], _rel(jensen_shannon(p, q), row["js"]))
    for j, row in enumerate(theirs["categorical"]):
        p, q = _evidently_bins(row, arrays[f"cref_{j}"], arrays[f"ccur_{j}"])
        worst["js_categorical"] = max(
            worst["js_categorical"], _rel(jensen_shannon(p, q), row["js"])
        )
    return {
        "max_relative_difference": worst,
        "sample_rows": sample,
        "pass": max(worst.values()) <= 1e-6,
    }


def _evidently_bins(
    row: dict[str, Any], ref: np.ndarray, cur: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shares of ``ref`` and ``cur`` over the bins Evidently used (its Sturges edges, or
    its category keys for categorical and low-cardinality numeric columns)."""
    if row["binning"] == "sturges":
        edges = np.asarray(row["edges"], dtype=np.float64)
        return np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)
    keys = np.asarray(row["keys"]).astype(ref.dtype)
    return (
        np.array([np.sum(ref == k) for k in keys]) / len(ref),
        np.array([np.sum(cur == k) for k in keys]) / len(cur),
    )


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    parser.add_argument("--no-peer", action="store_true", help="skip Evidently")
    parser.add_argument("--side", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side, *rest = args.side
        out = side_prodml(*rest) if side == "prodml" else side_stored(*rest)
        print(json.dumps(out))
        return

    rows = 100_000 if args.quick else 1_000_000
    paths = ensure_data(rows)
    report: dict[str, Any] = {
        "rows": rows,
        "numeric": len(NUMERIC),
        "categorical": len(CATEGORICAL),
    }
    with tempfile.TemporaryDirectory() as tmp:
        profile = str(Path(tmp) / "reference.profile")
        ours = _child(["prodml", str(paths["reference"]), str(paths["current"]), profile])
        stored = _child(["stored", profile, str(paths["next"])])
    report["prodml"] = ours
    report["prodml_stored_reference"] = stored
    print(
        f"prodml: {ours['seconds_total']:.2f} s total ({ours['seconds_fit']:.2f} read + fit, "
        f"{ours['seconds_score']:.2f} read + score), "
        f"peak {ours['peak_rss_mib']:.0f} MiB, profile {ours['profile_bytes'] / 2**20:.1f} MiB"
    )
    print(
        f"prodml, stored reference, new window: {stored['seconds_total']:.2f} s "
        f"({stored['seconds_load_profile']:.2f} load profile, {stored['seconds_score']:.2f} read "
        f"+ score), peak {stored['peak_rss_mib']:.0f} MiB"
    )
    targets: dict[str, Any] = {
        "stored_window_seconds": {"target": 2.0, "value": stored["seconds_total"]}
    }
    targets["stored_window_seconds"]["pass"] = stored["seconds_total"] <= 2.0
    if not args.no_peer:
        python = peer_python("evidently", EVIDENTLY)
        theirs = _evidently(python, "preset", str(paths["reference"]), str(paths["current"]))
        report["evidently"] = theirs
        speedup = theirs["seconds_total"] / ours["seconds_total"]
        memory = ours["peak_rss_mib"] / theirs["peak_rss_mib"]
        print(
            f"Evidently: {theirs['seconds_total']:.1f} s total ({theirs['seconds_compute']:.1f} s "
            f"compute), peak {theirs['peak_rss_mib']:.0f} MiB"
        )
        print(
            f"speed-up ×{speedup:.1f} (target ≥ 50), memory {memory:.2f} of Evidently's (target ≤ 0.33)"
        )
        print(f"{'column':8} {'prodml':>26} {'Evidently':>26}")
        for c in [*NUMERIC, *CATEGORICAL]:
            a, b = ours["columns"][c], theirs["columns"].get(c, {})
            print(
                f"{c:8} {a['method'][:12]:>12} {a['score'] or float('nan'):8.4f} {'D' if a['drifted'] else '.':>4}"
                f" {str(b.get('method', '?'))[:12]:>12} {b.get('score', float('nan')):8.4f}"
                f" {'D' if b.get('drifted') else '.':>4}"
            )
        targets["speedup"] = {"target": 50.0, "value": speedup, "pass": speedup >= 50.0}
        targets["memory_ratio"] = {"target": 1 / 3, "value": memory, "pass": memory <= 1 / 3}
        report["parity"] = parity(python, paths)
        print(f"parity with Evidently: {report['parity']['max_relative_difference']}")
        targets["parity"] = {"target": 1e-6, "pass": report["parity"]["pass"]}
    report["targets"] = targets
    report["pass"] = all(t["pass"] for t in targets.values())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
