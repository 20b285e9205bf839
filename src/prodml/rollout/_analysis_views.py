"""The other views of an experiment: sample-ratio mismatch, effects per segment and per
time bucket, shadow arms compared with their live arm on the same requests, and the
bandit's posteriors with its estimated regret.

>>> bucket_width("day") // 3_600_000_000
24
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from prodml.core.errors import ConfigError
from prodml.rollout._analysis_compare import fixed_test
from prodml.rollout._analysis_data import ArmKey, ExperimentRows
from prodml.rollout._analysis_metrics import MetricTable, kind_of
from prodml.stats import (
    BanditState,
    BetaArm,
    GaussianArm,
    delong_test,
    holm,
    normal_test,
    paired_differences,
    probabilities,
    sample_ratio_mismatch,
    segment_effects,
)
from prodml.stats._auc import grouped_delong_auc

__all__ = ["bandit_view", "bucket_width", "over_time", "paired_views", "segment_view", "srm_view"]

Bucket = Literal["hour", "day"]
#: Segments shown per comparison; rarer values are pooled as ``"(other)"``.
MAX_SEGMENTS = 50
#: Posterior draws (fixed seed) for the bandit's probability that each arm is best.
BANDIT_DRAWS = 20_000
BANDIT_SEED = 0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_width(bucket: Bucket) -> int:
    """The bucket's width in microseconds."""
    if bucket not in ("hour", "day"):
        raise ConfigError(f"bucket: expected 'hour' or 'day', got {bucket!r}")
    return 3_600_000_000 * (24 if bucket == "day" else 1)


# -- sample-ratio mismatch -------------------------------------------------------------


def srm_view(rows: ExperimentRows, expected: Mapping[str, float] | None) -> dict[str, Any] | None:
    """χ² of the distinct units per live arm since the SRM start against ``expected``
    (arm → weight; arms of weight 0 left out); None with fewer than two weighted arms or
    no unit since ``srm_start``."""
    if expected is None:
        return None
    for name, weight in expected.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight >= 0:
            raise ConfigError(f"expected_weights[{name!r}]: expected a weight >= 0, got {weight!r}")
    weighted = {name: float(w) for name, w in sorted(expected.items()) if w > 0}
    if len(weighted) < 2:
        return None
    observed = [
        rows.counts[ArmKey(name)].srm_units if ArmKey(name) in rows.counts else 0
        for name in weighted
    ]
    if sum(observed) == 0:  # no unit routed since srm_start: nothing to check yet
        return None
    check = sample_ratio_mismatch(observed, list(weighted.values()))
    return {
        "arms": list(weighted),
        "weights": list(weighted.values()),
        "observed": list(check.observed),
        "expected": list(check.expected),
        "statistic": check.statistic,
        "p": check.pvalue,
        "threshold": check.threshold,
        "mismatch": check.mismatch,
    }


# -- segments ----------------------------------------------------------------------------


def _pooled(codes: npt.NDArray[np.int64], labels: list[str], rows: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], list[str]]:  # fmt: skip
    """Codes of the :data:`MAX_SEGMENTS` most frequent values among ``rows``, the rest
    pooled under ``"(other)"``."""
    counts = np.bincount(codes[rows], minlength=len(labels))
    if np.count_nonzero(counts) <= MAX_SEGMENTS:
        return codes, labels
    top = np.argsort(-counts, kind="stable")[:MAX_SEGMENTS]
    remap = np.full(len(labels), MAX_SEGMENTS, np.int64)
    remap[top] = np.arange(MAX_SEGMENTS)
    return remap[codes], [labels[i] for i in top] + ["(other)"]


def segment_view(
    table: MetricTable, metric: str, column: str, champion: int, arm: int, alpha: float
) -> dict[str, Any]:
    """The effect (arm − champion) in each value of ``column``, Holm-adjusted within the
    family of segments: :func:`~prodml.stats.segment_effects` for a per-row metric, a
    z test on DeLong variances per segment for ROC-AUC."""
    codes, labels = table.rows.segment(column)
    mask, values, scores, code = table.selected(metric)
    pair = (code == champion) | (code == arm)
    codes, labels = _pooled(codes, labels, np.flatnonzero(mask)[pair])
    seg = codes[mask][pair]
    treatment = code[pair] == arm
    if kind_of(metric) == "auc":
        return _auc_segments(values[pair], scores[pair], treatment, seg, labels, alpha)
    kind: Literal["mean", "proportion"] = (
        "proportion" if kind_of(metric) == "proportion" else "mean"
    )
    result = segment_effects(treatment, values[pair], seg, kind=kind, alpha=alpha, method="holm")
    out = result.to_dict()
    for entry in out["segments"]:
        entry["segment"] = labels[int(entry["segment"])]
    return out


def _auc_segments(
    y: npt.NDArray[np.float64], score: npt.NDArray[np.float64], treatment: npt.NDArray[np.bool_],
    seg: npt.NDArray[np.int64], labels: list[str], alpha: float,
) -> dict[str, Any]:  # fmt: skip
    groups = len(labels)
    cell = seg * 2 + treatment
    auc, var, pos, neg = grouped_delong_auc(y == 1.0, score, cell, 2 * groups)
    tests = [
        normal_test(float(auc[2 * g + 1] - auc[2 * g]), math.sqrt(var[2 * g] + var[2 * g + 1]), alpha=alpha)
        for g in range(groups)
    ]  # fmt: skip
    pvalues = np.array([t.pvalue for t in tests])
    adjusted = holm(pvalues, alpha)[0]
    segments = [
        {"segment": labels[g], "n_a": int(pos[2 * g] + neg[2 * g]),
         "n_b": int(pos[2 * g + 1] + neg[2 * g + 1]), "mean_a": float(auc[2 * g]),
         "mean_b": float(auc[2 * g + 1]), "effect": t.estimate, "se": t.std_error,
         "ci_low": t.ci_low, "ci_high": t.ci_high, "p_value": t.pvalue,
         "p_adjusted": float(adjusted[g])}
        for g, t in enumerate(tests)
        if pos[2 * g] + neg[2 * g] + pos[2 * g + 1] + neg[2 * g + 1] > 0
    ]  # fmt: skip
    return {"kind": "roc_auc", "method": "holm", "alpha": alpha, "segments": segments}


# -- over time ---------------------------------------------------------------------------


def over_time(
    table: MetricTable, metric: str, champion: int, challengers: list[int], bucket: Bucket,
    alpha: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per UTC bucket: each live arm's rows and metric value, and each challenger's
    estimate (arm − champion) with its fixed-horizon interval within the bucket."""
    rows = table.rows
    selection = table.selected(metric)
    if not selection.mask.any():
        return []
    width = bucket_width(bucket)
    index = rows.time_us if selection.mask.all() else rows.time_us[selection.mask]
    index = np.floor_divide(index, width)  # then in place: fresh pages cost a pass each
    first = int(index.min())
    spans = int(index.max()) - first + 1
    arms = len(rows.arms)
    index -= first
    index *= arms
    index += selection.code
    stats = table.grouped(metric, index, spans * arms)
    out = []
    for b in range(spans):
        cells = stats[b * arms : (b + 1) * arms]
        if not any(cells[code].n for code in rows.live):
            continue
        comparisons = {}
        for arm in challengers:
            test = fixed_test(cells[champion], cells[arm], alpha)
            comparisons[rows.arms[arm].name] = {
                "estimate": cells[arm].value - cells[champion].value,
                "ci_low": None if test is None else test.ci_low,
                "ci_high": None if test is None else test.ci_high,
            }
        start = _EPOCH + timedelta(microseconds=(first + b) * width)
        out.append({
            "start": start.isoformat(),
            "arms": {rows.arms[c].name: {"n": cells[c].n, "value": cells[c].value} for c in rows.live},
            "comparisons": comparisons,
        })  # fmt: skip
    return out


# -- shadow arms ---------------------------------------------------------------------------


def paired_views(table: MetricTable, alpha: float, threshold: float) -> list[dict[str, Any]]:
    """Each shadow arm against each live arm it shadowed, on the same labelled requests
    and rows: paired t tests of log loss, Brier and accuracy, DeLong's test of ROC-AUC
    (differences shadow − live)."""
    rows = table.rows
    out = []
    for shadow in rows.arms:
        if not shadow.shadow:
            continue
        s, live = rows.shadow_pairs(shadow)
        usable = np.isfinite(rows.label[live]) & np.isfinite(rows.output[s])
        usable &= np.isfinite(rows.output[live])
        s, live = s[usable], live[usable]
        for live_code in sorted(set(rows.code[live].tolist())):
            pick = rows.code[live] == live_code
            y, a, b = rows.label[live[pick]], rows.output[live[pick]], rows.output[s[pick]]
            out.append(_paired(shadow, rows.arms[live_code], y, a, b, alpha, threshold))
    return out


def _paired(
    shadow: ArmKey, live: ArmKey, y: npt.NDArray[np.float64], a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64], alpha: float, threshold: float,
) -> dict[str, Any]:  # fmt: skip
    entry: dict[str, Any] = {"shadow": shadow.name, "live": live.name, "n": len(y), "metrics": {}}
    if not ((y == 0.0) | (y == 1.0)).all():
        entry["reason"] = "labels are not binary (0 or 1)"
        return entry
    if len(y) and min(a.min(), b.min()) >= 0.0 and max(a.max(), b.max()) <= 1.0:
        for name, result in paired_differences(y, a, b, threshold=threshold, alpha=alpha).items():
            entry["metrics"][name] = result.to_dict()
    entry["metrics"]["roc_auc"] = delong_test(y, a, b, alpha=alpha).to_dict()
    return entry


# -- bandit ------------------------------------------------------------------------------------


def bandit_view(table: MetricTable) -> dict[str, Any] | None:
    """Per live arm, the posterior of its mean reward from the logged rewards (Beta(1, 1)
    prior for 0/1 rewards, else :class:`~prodml.stats.GaussianArm`'s), the probability it
    is best (:data:`BANDIT_DRAWS` joint draws, seed :data:`BANDIT_SEED`) and the regret:
    over every rewarded row, the best posterior mean minus its arm's. None when no live
    record has a propensity or a reward."""
    rows = table.rows
    live = rows.live
    mask, rewards, _, code = table.selected("reward")
    has_propensity = bool(np.isfinite(rows.propensity[table.live_rows]).any())
    if not (mask.any() or has_propensity) or not live:
        return None
    binary = bool(((rewards == 0.0) | (rewards == 1.0)).all())
    posteriors: dict[str, BetaArm | GaussianArm] = {}
    counts: dict[str, int] = {}
    for arm in live:
        x = rewards[code == arm]
        name = rows.arms[arm].name
        counts[name] = len(x)
        if binary:
            wins = float(x.sum())
            posteriors[name] = BetaArm(1.0 + wins, 1.0 + len(x) - wins, len(x))
        else:
            mean = float(x.mean()) if len(x) else 0.0
            posteriors[name] = GaussianArm(len(x), mean, float(((x - mean) ** 2).sum()))
    state = BanditState("bernoulli" if binary else "gaussian", posteriors)
    best = probabilities(state, np.random.default_rng(BANDIT_SEED), draws=BANDIT_DRAWS)
    summary = {name: _posterior(arm) for name, arm in posteriors.items()}
    top = max(mean for mean, _ in summary.values())
    propensity = rows.propensity
    arms = {}
    for arm in live:
        name = rows.arms[arm].name
        p = propensity[(rows.code == arm) & np.isfinite(propensity)]
        arms[name] = {
            "rewards": counts[name],
            "mean_reward": float(rewards[code == arm].mean()) if counts[name] else math.nan,
            "posterior_mean": summary[name][0],
            "posterior_sd": summary[name][1],
            "prob_best": best[name],
            "mean_propensity": float(p.mean()) if len(p) else math.nan,
        }
    regret = sum(counts[name] * (top - summary[name][0]) for name in counts)
    return {"kind": state.kind, "arms": arms, "regret": regret, "draws": BANDIT_DRAWS,
            "seed": BANDIT_SEED}  # fmt: skip


def _posterior(arm: BetaArm | GaussianArm) -> tuple[float, float]:
    if isinstance(arm, GaussianArm):
        return arm.posterior()
    a, b = arm.alpha, arm.beta
    return a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
