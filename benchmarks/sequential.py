"""Benchmark: sequential tests by simulation, against the error rates they promise.

The experiment compares conversion rates, 10% in arm A; the fixed-horizon plan for
detecting 10% → 11% at two-sided α = 0.05 with power 0.8 needs, by the unpooled
formula n = (z_{α/2} + z_β)² (p₁(1 − p₁) + p₂(1 − p₂)) / δ² = 14,748.05, 14,749 units per arm
(computed below). Every simulated experiment draws Binomial batches per look for both
arms and works on cumulative sums over a matrix of experiments × looks.

* **mSPRT under H0** (both arms 10%): a look at every controller pass, 60 evenly spaced
  looks up to the planned n, τ² tuned to the planned n (``msprt_proportions(...,
  planned_n=...)``); the share of experiments ever rejecting must be ≤ α.
* **Naive peeking**, same data: rejecting the first time the unpooled |z| > 1.96; the
  false-positive rate this inflates to (~30%) is shown, and must be ≥ 20% for the
  simulation to be credible.
* **Group-sequential power** (11% in arm B): Lan–DeMets O'Brien–Fleming-type boundaries
  at K = 5 equal looks; the maximum n per arm is the fixed-horizon n times the design's
  inflation factor (``Boundaries.inflation_factor``), so the power must be within 2
  points of 0.8. The power at the un-inflated fixed-horizon n is printed beside it.
  The mSPRT's power at the planned n, on the same data, is printed for comparison.

    .venv/bin/python benchmarks/sequential.py [--quick] [--seed N]

The last stdout line is one JSON object with every figure, the targets and pass/fail.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
from scipy import stats

from prodml.stats._sequential import msprt_proportions, spending_boundaries

ALPHA, POWER, P_A, P_B = 0.05, 0.8, 0.10, 0.11
LOOKS_MSPRT, LOOKS_GS = 60, 5


def fixed_horizon_n(p_a: float, p_b: float, alpha: float, power: float) -> int:
    """Units per arm for the two-sided unpooled z-test of p_a against p_b."""
    z = stats.norm.isf(alpha / 2) + stats.norm.isf(1 - power)
    return math.ceil(z**2 * (p_a * (1 - p_a) + p_b * (1 - p_b)) / (p_b - p_a) ** 2)


def cumulative_counts(
    rng: np.random.Generator, experiments: int, sizes: np.ndarray, p: float
) -> np.ndarray:
    """Cumulative successes per experiment (rows) and look (columns)."""
    batches = np.diff(sizes, prepend=0)
    return np.cumsum(rng.binomial(batches, p, (experiments, len(sizes))), axis=1)


def unpooled_z(n: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    pa, pb = xa / n, xb / n
    return (pb - pa) / np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n)


def msprt_h0(rng: np.random.Generator, experiments: int, planned: int) -> dict[str, Any]:
    sizes = np.round(np.linspace(planned / LOOKS_MSPRT, planned, LOOKS_MSPRT)).astype(np.int64)
    xa = cumulative_counts(rng, experiments, sizes, P_A)
    xb = cumulative_counts(rng, experiments, sizes, P_A)
    n = np.broadcast_to(sizes, xa.shape)
    t0 = time.perf_counter()
    test = msprt_proportions(n, xa, n, xb, planned_n=planned, alpha=ALPHA)
    seconds = time.perf_counter() - t0
    return {
        "looks": LOOKS_MSPRT,
        "msprt_false_positive_rate": float(test.rejected[:, -1].mean()),
        "naive_false_positive_rate": float(
            (np.abs(unpooled_z(n, xa, xb)) > 1.96).any(axis=1).mean()
        ),
        "fixed_horizon_false_positive_rate": float(
            (np.abs(unpooled_z(n, xa, xb))[:, -1] > 1.96).mean()
        ),
        "msprt_seconds": seconds,
    }


def power_h1(rng: np.random.Generator, experiments: int, planned: int) -> dict[str, Any]:
    t = np.arange(1, LOOKS_GS + 1) / LOOKS_GS
    design = spending_boundaries(t, "obrien_fleming", ALPHA)
    inflation = design.inflation_factor(POWER)
    bounds = np.array(design.z)
    out: dict[str, Any] = {
        "boundaries": [round(b, 4) for b in design.z],
        "inflation_factor": inflation,
    }
    for label, n_max in (("inflated", math.ceil(planned * inflation)), ("fixed_horizon", planned)):
        sizes = np.round(t * n_max).astype(np.int64)
        xa = cumulative_counts(rng, experiments, sizes, P_A)
        xb = cumulative_counts(rng, experiments, sizes, P_B)
        z = unpooled_z(np.broadcast_to(sizes, xa.shape), xa, xb)
        crossed = np.abs(z) >= bounds
        stopped = crossed.any(axis=1)
        first = np.where(stopped, crossed.argmax(axis=1), LOOKS_GS - 1)
        right_way = stopped & (z[np.arange(experiments), first] > 0)
        out[label] = {
            "max_n_per_arm": n_max,
            "power": float(right_way.mean()),
            "expected_n_per_arm": float(sizes[first].mean()),
        }
    sizes = np.round(np.linspace(planned / LOOKS_MSPRT, planned, LOOKS_MSPRT)).astype(np.int64)
    xa = cumulative_counts(rng, experiments, sizes, P_A)
    xb = cumulative_counts(rng, experiments, sizes, P_B)
    n = np.broadcast_to(sizes, xa.shape)
    test = msprt_proportions(n, xa, n, xb, planned_n=planned, alpha=ALPHA)
    out["msprt_power_at_planned_n"] = float(test.rejected[:, -1].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 experiments, not 20,000")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    experiments = 2_000 if args.quick else 20_000
    rng = np.random.default_rng(args.seed)
    planned = fixed_horizon_n(P_A, P_B, ALPHA, POWER)
    t0 = time.perf_counter()
    h0 = msprt_h0(rng, experiments, planned)
    h1 = power_h1(rng, experiments, planned)
    seconds = time.perf_counter() - t0
    se = math.sqrt(POWER * (1 - POWER) / experiments)
    print(
        f"fixed-horizon n per arm for {P_A:.0%} → {P_B:.0%}, α {ALPHA}, power {POWER}: {planned:,}"
    )
    print(f"{experiments:,} experiments per scenario, {seconds:.1f} s")
    print(
        f"H0, {LOOKS_MSPRT} looks: mSPRT false positives {h0['msprt_false_positive_rate']:.2%} "
        f"(target ≤ {ALPHA:.0%}); naive |z| > 1.96 peeking {h0['naive_false_positive_rate']:.2%}; "
        f"one look at the end {h0['fixed_horizon_false_positive_rate']:.2%}"
    )
    print(
        f"OBF K={LOOKS_GS} boundaries {h1['boundaries']}, inflation factor {h1['inflation_factor']:.4f}"
    )
    for label in ("inflated", "fixed_horizon"):
        row = h1[label]
        print(
            f"  max n {row['max_n_per_arm']:,} per arm ({label}): power {row['power']:.2%}, "
            f"expected n {row['expected_n_per_arm']:,.0f} per arm"
        )
    print(f"mSPRT power at the planned n: {h1['msprt_power_at_planned_n']:.2%}")
    power = h1["inflated"]["power"]
    targets = {
        "msprt_false_positive_rate": {
            "target": ALPHA, "value": h0["msprt_false_positive_rate"],
            "pass": h0["msprt_false_positive_rate"] <= ALPHA,
        },
        "naive_false_positive_rate": {
            "target": 0.2, "value": h0["naive_false_positive_rate"],
            "pass": h0["naive_false_positive_rate"] >= 0.2,
        },
        "group_sequential_power": {
            "target": POWER, "value": power, "tolerance": 0.02, "monte_carlo_se": se,
            "pass": abs(power - POWER) <= 0.02,
        },
        "seconds": {"target": 60.0, "value": seconds, "pass": seconds < 60.0},
    }  # fmt: skip
    for name, row in targets.items():
        print(
            f"{'PASS' if row['pass'] else 'FAIL'} {name}: {row['value']:.4g} (target {row['target']})"
        )
    report: dict[str, Any] = {
        "experiments": experiments,
        "fixed_horizon_n_per_arm": planned,
        "h0": h0,
        "h1": h1,
        "seconds": seconds,
        "targets": targets,
    }
    report["pass"] = all(t["pass"] for t in targets.values())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
