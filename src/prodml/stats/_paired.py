"""Paired comparison of two models scored on the same requests: DeLong's test for two
correlated ROC-AUCs, a paired bootstrap for any metric, and paired t tests of per-row
log loss, Brier score and accuracy. Every difference is ``B − A``.

Pairing matters: both models see the same rows, so their errors are correlated, and a
test that treats them as independent samples is far too conservative.

DeLong's variance uses Sun & Xu's (2014) midrank form of the structural components,
``O(n log n)`` instead of the ``O(n²)`` pairwise kernel: for model k with positive
scores X (m of them) and negative scores Y (n), ``V10_i = (Tz_i − Tx_i) / n`` and
``V01_j = 1 − (Tz_j − Ty_j) / m`` where T are midranks among all scores (z), among the
positives (x) and among the negatives (y); ``Var(AUC_a − AUC_b) = Var(V10_a − V10_b)/m
+ Var(V01_a − V01_b)/n``.

>>> y = [0, 0, 0, 1, 1, 1, 0, 1]
>>> a = [0.1, 0.4, 0.35, 0.8, 0.3, 0.7, 0.5, 0.6]
>>> b = [0.2, 0.3, 0.1, 0.9, 0.6, 0.8, 0.4, 0.7]
>>> r = delong_test(y, a, b)
>>> r.value_a, r.value_b, round(r.p_value, 4)
(0.8125, 1.0, 0.3428)
>>> paired_differences(y, a, b)["accuracy"].difference
0.25
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats._metrics import (
    LOG_LOSS_EPS,
    binary_inputs,
    check_alpha,
    check_threshold,
    finite_floats,
)

__all__ = [
    "PairedComparison",
    "PairedMetric",
    "delong_test",
    "paired_bootstrap",
    "paired_differences",
]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
#: Metrics the bootstrap computes vectorised over resamples; any other is a callable.
PairedMetric = Literal["roc_auc", "log_loss", "brier", "accuracy"]

#: Resampled rows held in memory at once (resamples × rows) by the bootstrap.
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class PairedComparison:
    """Metric of model A and model B on the same rows, their difference ``B − A`` with
    its standard error, ``1 − alpha`` interval and two-sided p. ``resamples`` counts the
    bootstrap resamples used (those where the metric was defined); 0 for other methods.
    """

    method: str
    metric: str
    n: int
    value_a: float
    value_b: float
    difference: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    resamples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; an undefined value (NaN) is None."""
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }


def _scored(y_true: Any, score_a: Any, score_b: Any, *, probabilities: bool) -> tuple[Bools, Floats, Floats]:  # fmt: skip
    """Checked labels and both models' scores (probabilities in [0, 1] if asked)."""
    if probabilities:
        y, a = binary_inputs(y_true, score_a)
        _, b = binary_inputs(y_true, score_b)
        return y, a, b
    a, b = finite_floats(score_a, "score_a"), finite_floats(score_b, "score_b")
    y, _ = binary_inputs(y_true, np.zeros(len(np.asarray(y_true).reshape(-1))))
    for field, s in (("score_a", a), ("score_b", b)):
        if len(s) != len(y):
            raise SchemaError(f"{field}: has {len(s)} rows but y_true has {len(y)}")
    return y, a, b


def _normal_comparison(
    method: str, metric: str, n: int, va: float, vb: float, diff: float, se: float,
    alpha: float, df: float = math.inf,
) -> PairedComparison:  # fmt: skip
    """Two-sided p and interval of ``diff`` from N(0, se²) (Student's t with ``df``)."""
    if se == 0 or math.isnan(se):
        p = math.nan if math.isnan(se) else (1.0 if diff == 0 else 0.0)
        half = math.nan if math.isnan(se) else 0.0
    elif math.isinf(df):
        p = float(2 * special.ndtr(-abs(diff / se)))
        half = float(special.ndtri(1 - alpha / 2)) * se
    else:
        p = float(2 * stats.t.sf(abs(diff / se), df))
        half = float(stats.t.isf(alpha / 2, df)) * se
    return PairedComparison(method, metric, n, va, vb, diff, se, diff - half, diff + half, p)


def delong_test(
    y_true: Any, score_a: Any, score_b: Any, *, alpha: float = 0.05
) -> PairedComparison:
    """DeLong's test of ``AUC_b − AUC_a`` for two models scored on the same rows (any
    finite scores; ties count one half). With one class the AUCs are undefined: NaN.

    >>> delong_test([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], [0.1, 0.9, 0.2, 0.8]).p_value
    1.0
    """
    alpha = check_alpha(alpha)
    y, a, b = _scored(y_true, score_a, score_b, probabilities=False)
    m = int(np.count_nonzero(y))
    k = len(y) - m
    if m == 0 or k == 0:
        nan = math.nan
        return PairedComparison("delong", "roc_auc", len(y), nan, nan, nan, nan, nan, nan, nan)
    scores = np.stack([a, b])
    pos, neg = scores[:, y], scores[:, ~y]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / k
    v10 = (tz[:, :m] - tx) / k
    v01 = 1.0 - (tz[:, m:] - ty) / m
    var = _diff_variance(v10, m) + _diff_variance(v01, k)
    diff = float(auc[1] - auc[0])
    return _normal_comparison(
        "delong", "roc_auc", len(y), float(auc[0]), float(auc[1]), diff,
        math.sqrt(max(var, 0.0)), alpha,
    )  # fmt: skip


def _diff_variance(components: Floats, count: int) -> float:
    """``Var(c_b − c_a) / count`` (sample variance, ddof 1; 0 for a single row)."""
    if count < 2:
        return 0.0
    return float(np.var(components[1] - components[0], ddof=1)) / count


def _row_losses(y: Bools, p: Floats, threshold: float) -> dict[str, Floats]:
    """Each row's log loss (clipped as :func:`~prodml.stats.log_loss`), squared error and
    correctness, whose means are the whole-set metrics."""
    likelihood = np.clip(np.where(y, p, 1.0 - p), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return {
        "log_loss": -np.log(likelihood),
        "brier": (p - y) ** 2,
        "accuracy": ((p >= threshold) == y).astype(np.float64),
    }


def paired_differences(
    y_true: Any, score_a: Any, score_b: Any, *, threshold: float = 0.5, alpha: float = 0.05
) -> dict[str, PairedComparison]:
    """Paired t tests of the per-row log loss, Brier score and accuracy (a row counts as
    positive when its score is ``>= threshold``): the mean of ``loss_b − loss_a`` with
    standard error ``sd/√n``, n − 1 degrees of freedom, as ``scipy.stats.ttest_rel``.
    Lower is better for log loss and Brier, higher for accuracy. NaN under two rows.

    >>> d = paired_differences([1, 0, 1], [0.6, 0.4, 0.7], [0.9, 0.2, 0.8])
    >>> round(d["brier"].difference, 4), round(d["brier"].p_value, 4)
    (-0.1067, 0.0692)
    """
    alpha = check_alpha(alpha)
    check_threshold(threshold)
    y, a, b = _scored(y_true, score_a, score_b, probabilities=True)
    n = len(y)
    losses_a, losses_b = _row_losses(y, a, threshold), _row_losses(y, b, threshold)
    out: dict[str, PairedComparison] = {}
    for metric in ("log_loss", "brier", "accuracy"):
        la, lb = losses_a[metric], losses_b[metric]
        if n < 2:
            va, vb = (float(la[0]), float(lb[0])) if n else (math.nan, math.nan)
            out[metric] = _normal_comparison(
                "paired_t", metric, n, va, vb, vb - va, math.nan, alpha
            )
            continue
        d = lb - la
        se = float(np.std(d, ddof=1)) / math.sqrt(n)
        out[metric] = _normal_comparison(
            "paired_t", metric, n, float(la.mean()), float(lb.mean()), float(d.mean()), se,
            alpha, df=float(n - 1),
        )  # fmt: skip
    return out


def _vector_metric(metric: PairedMetric, y: Bools, p: Floats, threshold: float) -> Floats:
    """The metric of each row of the 2-D ``y`` and ``p`` (one resample per row)."""
    if metric == "roc_auc":
        ranks = stats.rankdata(p, axis=1)
        pos = y.sum(axis=1, dtype=np.float64)
        neg = y.shape[1] - pos
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = ((ranks * y).sum(axis=1) - pos * (pos + 1) / 2.0) / (pos * neg)
        return np.where((pos > 0) & (neg > 0), auc, np.nan)
    if metric == "log_loss":
        likelihood = np.clip(np.where(y, p, 1.0 - p), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        per_row: Floats = -np.log(likelihood)
    elif metric == "brier":
        per_row = (p - y) ** 2
    else:
        per_row = ((p >= threshold) == y).astype(np.float64)
    return np.asarray(per_row.mean(axis=1), dtype=np.float64)


def paired_bootstrap(
    y_true: Any,
    score_a: Any,
    score_b: Any,
    metric: PairedMetric | Callable[[Bools, Floats], float],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
) -> PairedComparison:
    """Paired bootstrap of ``metric(B) − metric(A)``: rows are resampled with replacement
    (the same rows for both models), the interval is the percentile interval of the
    resampled differences, the standard error their standard deviation, and the
    two-sided p ``2·min((#{d ≤ 0} + 1), (#{d ≥ 0} + 1)) / (B + 1)`` capped at 1.

    ``metric`` is a name computed vectorised over all resamples (``roc_auc``,
    ``log_loss``, ``brier``, ``accuracy`` at ``threshold``) or a function
    ``(y_true, score) -> float`` called once per resample. Resamples where the metric is
    undefined (NaN, e.g. one class for ROC-AUC) are left out. Under two rows the
    difference has no standard error, interval or p-value (NaN), as in
    :func:`paired_differences`.

    >>> r = paired_bootstrap([0, 1, 0, 1, 1, 0], [.2, .6, .4, .7, .3, .5], [.1, .8, .3, .9, .6, .2], "brier")
    >>> round(r.difference, 4), r.resamples, round(r.p_value, 4)
    (-0.14, 2000, 0.001)
    """
    alpha = check_alpha(alpha)
    check_threshold(threshold)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ConfigError(f"n_resamples: expected a positive int, got {n_resamples!r}")
    if isinstance(metric, str) and metric not in ("roc_auc", "log_loss", "brier", "accuracy"):
        raise ConfigError(
            f"metric: expected 'roc_auc', 'log_loss', 'brier', 'accuracy' or a function, got {metric!r}"
        )
    y, a, b = _scored(y_true, score_a, score_b, probabilities=True)
    n = len(y)
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")

    def values(yy: Bools, aa: Floats, bb: Floats) -> tuple[Floats, Floats]:
        if isinstance(metric, str):
            return _vector_metric(metric, yy, aa, threshold), _vector_metric(
                metric, yy, bb, threshold
            )
        va = np.array([metric(yy[i], aa[i]) for i in range(len(yy))], dtype=np.float64)
        vb = np.array([metric(yy[i], bb[i]) for i in range(len(yy))], dtype=np.float64)
        return va, vb

    if n == 0:
        nan = math.nan
        return PairedComparison("bootstrap", name, 0, nan, nan, nan, nan, nan, nan, nan)
    full_a, full_b = values(y[None, :], a[None, :], b[None, :])
    diff = float(full_b[0] - full_a[0])
    if n < 2:  # every resample is the one row: no spread to judge the difference by
        nan = math.nan
        return PairedComparison("bootstrap", name, n, float(full_a[0]), float(full_b[0]), diff, nan, nan, nan, nan)  # fmt: skip
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n)
    diffs = []
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        va, vb = values(y[idx], a[idx], b[idx])
        diffs.append(vb - va)
    d = np.concatenate(diffs)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        nan = math.nan
        return PairedComparison("bootstrap", name, n, float(full_a[0]), float(full_b[0]), diff, nan, nan, nan, nan)  # fmt: skip
    low, high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    tail = min(np.count_nonzero(d <= 0), np.count_nonzero(d >= 0)) + 1
    return PairedComparison(
        method="bootstrap", metric=name, n=n, value_a=float(full_a[0]), value_b=float(full_b[0]),
        difference=diff, se=float(np.std(d, ddof=1)) if len(d) > 1 else math.nan,
        ci_low=float(low), ci_high=float(high), p_value=min(1.0, 2.0 * int(tail) / (len(d) + 1)),
        resamples=len(d),
    )  # fmt: skip
