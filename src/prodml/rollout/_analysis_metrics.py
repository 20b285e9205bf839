"""Each arm's value of each metric, with what the tests need (n, per-row mean and sample
variance, standard error; successes of a rate; the DeLong variance of an AUC; a
distribution-free interval of a quantile), computed for any grouping of the records
(arms, or arms × time buckets) with ``np.bincount`` — never a loop over rows.

Which records a metric reads (see :data:`~prodml.rollout.METRICS` for its source):

* a model metric (``log_loss``, ``brier``, ``accuracy``, ``roc_auc``): the arm's *own*
  predictions (no fallback) with a finite output and a label;
* ``reward``: the live arm's records with a reward, fallbacks included — the business
  outcome of the traffic routed to it;
* ``error_rate``, ``fallback_rate``: every record routed to the arm;
  ``mean_latency_ms``, ``p99_latency_ms``: those with a latency.

>>> row_values("brier", np.array([1.0, 0.0]), np.array([0.8, 0.4]), 0.5).round(2).tolist()
[0.04, 0.16]
>>> quantile_ranks(1000, 0.99, 0.05)
(983, 997)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as scipy_stats

from prodml.core.errors import SchemaError
from prodml.rollout._analysis_data import ExperimentRows
from prodml.rollout._metrics import METRICS
from prodml.stats import LOG_LOSS_EPS, psi, shares
from prodml.stats._auc import grouped_delong_auc

__all__ = ["MetricStat", "MetricTable", "Selection", "quantile_ranks", "row_values"]

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Kind = Literal["mean", "proportion", "auc", "quantile"]

_KINDS: dict[str, Kind] = {
    "log_loss": "mean",
    "brier": "mean",
    "accuracy": "proportion",
    "roc_auc": "auc",
    "reward": "mean",
    "error_rate": "proportion",
    "fallback_rate": "proportion",
    "mean_latency_ms": "mean",
    "p99_latency_ms": "quantile",
}
_PROBABILITIES = ("log_loss", "brier")
#: Bins of the champion's scores that :meth:`MetricTable.shift` compares shares over.
SHIFT_BINS = 10


@dataclass(frozen=True)
class MetricStat:
    """One group's value of ``metric`` over ``n`` rows. ``mean`` and ``variance`` are the
    per-row mean and sample variance (ddof 1) of a mean or rate, and ``std_error`` the
    mean's; for ``roc_auc`` ``mean`` is the AUC and ``variance`` its DeLong variance (the
    estimate's, so ``std_error`` is its root). ``successes`` counts a rate's hits; a
    quantile has a distribution-free interval ``[low, high]``."""

    metric: str
    kind: Kind
    n: int
    value: float
    mean: float = math.nan
    variance: float = math.nan
    std_error: float = math.nan
    successes: int = 0
    low: float = math.nan
    high: float = math.nan

    @property
    def sd(self) -> float:
        """The per-row standard deviation (for AUC: that of a row implied by the
        DeLong variance, ``√(n·Var)``)."""
        if self.kind == "auc":
            return math.sqrt(self.variance * self.n) if self.n else math.nan
        return math.sqrt(self.variance) if self.variance >= 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "n": self.n,
            "value": self.value,
            "mean": self.mean,
            "variance": self.variance,
            "std_error": self.std_error,
        }
        if self.kind == "proportion":
            out["successes"] = self.successes
        if self.kind == "quantile":
            out["low"], out["high"] = self.low, self.high
        return out


def kind_of(metric: str) -> Kind:
    return _KINDS[metric]


def row_values(metric: str, y: Floats, p: Floats, threshold: float) -> Floats:
    """Each labelled row's log loss (probabilities clipped as :func:`~prodml.stats.log_loss`),
    squared error or correctness (score ``>= threshold`` predicts 1); their mean is the
    metric, as :func:`~prodml.stats.paired_differences` computes it per row."""
    if metric == "log_loss":  # in place: one new array (fresh pages cost a pass each)
        out: Floats = np.subtract(1.0, p)
        np.copyto(out, p, where=y == 1.0)
        np.clip(out, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS, out=out)
        np.log(out, out=out)
        return np.negative(out, out=out)
    if metric == "brier":
        squared: Floats = (p - y) ** 2
        return squared
    correct: Floats = ((p >= threshold) == (y == 1.0)).astype(np.float64)
    return correct


def quantile_ranks(n: int, q: float, alpha: float) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` of the order statistics whose interval
    ``[X₍ₗ₎, X₍ᵤ₎]`` holds the ``q`` quantile with probability ``>= 1 − alpha`` for any
    continuous distribution: ``P(l <= B < u) >= 1 − alpha`` for ``B ~ Binomial(n, q)``.
    ``l = 0`` and ``u = n + 1`` stand for unbounded ends."""
    dist = scipy_stats.binom(n, q)
    low = int(dist.ppf(alpha / 2))
    if dist.cdf(low) <= alpha / 2:
        low += 1
    high = int(dist.ppf(1 - alpha / 2)) + 1
    return max(low, 0), min(high, n + 1)


class Selection(NamedTuple):
    """The records a metric reads (``mask`` over all records) and, for those, their
    values (a rate's: bools), their scores (ROC-AUC: ``values`` are labels) and their
    arms' codes."""

    mask: Bools
    values: Floats
    scores: Floats
    code: npt.NDArray[np.intp]


class MetricTable:
    """The metrics of one experiment's records (``rows``), per arm or per any grouping;
    per-arm results are computed once. ``alpha`` sets the quantile intervals' level
    (each arm's at ``1 − alpha/2``, so a difference of two has ``1 − alpha``)."""

    def __init__(self, rows: ExperimentRows, *, endpoint: str, threshold: float, alpha: float):
        self.rows = rows
        self.endpoint = endpoint
        self.threshold = threshold
        self.alpha = alpha
        self._per_arm: dict[str, list[MetricStat]] = {}
        self._selected: dict[str, Selection] = {}
        self._latencies: list[_Latency] | None = None
        self._live_rows: Bools | None = None
        #: the records' arm codes as NumPy's index type, converted once (``np.bincount``
        #: would convert small ints on every call)
        self.codes: npt.NDArray[np.intp] = rows.code.astype(np.intp)

    @property
    def live_rows(self) -> Bools:
        """Whether each record is a live arm's."""
        if self._live_rows is None:
            live = np.zeros(len(self.rows.arms), np.bool_)
            live[self.rows.live] = True
            self._live_rows = live[self.rows.code]
        return self._live_rows

    # -- which rows, which values ------------------------------------------------------

    def labelled(self) -> Bools:
        """Records whose own arm answered with a finite output and that have a label."""
        return self.selected("_labelled").mask

    def selected(self, metric: str) -> Selection:
        """The records ``metric`` reads and their values (computed once)."""
        found = self._selected.get(metric)
        if found is None:
            mask, values, scores = self._select(metric)
            code = self.codes if len(values) == len(mask) else self.codes[mask]
            found = Selection(mask, values, scores, code)
            self._selected[metric] = found
        return found

    def _select(self, metric: str) -> tuple[Bools, Floats, Floats]:
        r = self.rows
        if metric == "_labelled":
            mask: Bools = r.own & np.isfinite(r.output) & np.isfinite(r.label)
            return mask, r.label[mask], r.output[mask]
        if metric == "reward":
            mask = self.live_rows & np.isfinite(r.reward)
            return mask, r.reward[mask], r.reward[mask]
        if metric in ("error_rate", "fallback_rate"):
            hits = r.error if metric == "error_rate" else ~r.own
            return np.ones(len(hits), np.bool_), hits, hits  # type: ignore[return-value]
        if metric in ("mean_latency_ms", "p99_latency_ms"):
            mask = np.isfinite(r.latency)
            if mask.all():  # the usual case: no copy
                return mask, r.latency, r.latency
            return mask, r.latency[mask], r.latency[mask]
        labelled = self.selected("_labelled")
        y, p = labelled.values, labelled.scores
        self._check_outputs(metric)
        self._check_labels(metric, y, p)
        if metric == "roc_auc":
            return labelled.mask, y, p
        values = row_values(metric, y, p, self.threshold)
        return labelled.mask, values, values

    def _check_outputs(self, metric: str) -> None:
        """An infinite output is no answer a model metric can score: refuse it rather
        than leave its rows out (NaN stays "no output", as an error's record has)."""
        r = self.rows
        if not np.isinf(r.output).any():  # the usual case: one pass, no full-size masks
            return
        infinite = r.own & np.isinf(r.output) & np.isfinite(r.label)
        if infinite.any():
            raise SchemaError(
                f"endpoint {self.endpoint!r}: metric {metric!r} needs finite model outputs, "
                f"got {int(infinite.sum())} labelled records with an infinite output"
            )

    def _check_labels(self, metric: str, y: Floats, p: Floats) -> None:
        binary = (y == 0.0) | (y == 1.0)
        if not binary.all():
            bad = np.unique(y[~binary])[:5].tolist()
            raise SchemaError(
                f"endpoint {self.endpoint!r}: metric {metric!r} needs binary labels (0 or 1), "
                f"got {bad}"
            )
        if metric in _PROBABILITIES and len(p) and (p.min() < 0.0 or p.max() > 1.0):
            raise SchemaError(
                f"endpoint {self.endpoint!r}: metric {metric!r} needs outputs that are "
                f"probabilities in [0, 1], got values in [{p.min()}, {p.max()}]"
            )

    # -- statistics --------------------------------------------------------------------

    def per_arm(self, metric: str) -> list[MetricStat]:
        """``metric`` of every arm, in the order of ``rows.arms``."""
        found = self._per_arm.get(metric)
        if found is None:
            groups = len(self.rows.arms)
            if kind_of(metric) == "quantile":
                found = [self._quantile(metric, code) for code in range(groups)]
            else:
                found = self.grouped(metric, self.selected(metric).code, groups)
            self._per_arm[metric] = found
        return found

    def grouped(
        self, metric: str, group: npt.NDArray[np.integer[Any]], groups: int
    ) -> list[MetricStat]:
        """``metric`` of each group ``0 … groups-1``, ``group`` giving the group of each
        record the metric reads (in the order of :meth:`selected`)."""
        selection = self.selected(metric)
        values, scores = selection.values, selection.scores
        g = group
        kind = kind_of(metric)
        if kind == "auc":
            auc, var, pos, neg = grouped_delong_auc(values == 1.0, scores, g, groups)
            return [
                MetricStat(metric, kind, int(pos[i] + neg[i]), float(auc[i]), float(auc[i]),
                           float(var[i]), math.sqrt(var[i]) if var[i] >= 0 else math.nan)
                for i in range(groups)
            ]  # fmt: skip
        n = np.bincount(g, minlength=groups).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            total: Floats
            if values.dtype == np.bool_:  # hits counted where they are: no float copy
                total = np.bincount(g[values], minlength=groups).astype(np.float64)
            else:
                total = np.bincount(g, weights=values, minlength=groups).astype(np.float64)
            mean = total / n
            if kind == "proportion":  # 0/1 values: the sample variance is n/(n-1)·p(1-p)
                squares: Floats = n * mean * (1.0 - mean)
            else:  # (values − mean)² in one new array
                deviation = mean[g]
                np.subtract(values, deviation, out=deviation)
                np.square(deviation, out=deviation)
                squares = np.bincount(g, deviation, groups).astype(np.float64)
                del deviation
            var = np.where(n > 1, squares / (n - 1), math.nan)
            se = np.sqrt((mean * (1.0 - mean) if kind == "proportion" else var) / n)
        return [
            MetricStat(metric, kind, int(n[i]), float(mean[i]), float(mean[i]), float(var[i]),
                       float(se[i]), successes=round(total[i]) if kind == "proportion" else 0)
            for i in range(groups)
        ]  # fmt: skip

    def _latency(self, code: int) -> _Latency:
        """The arm's latency figures, from one partial sort of its finite latencies (the
        arms split once)."""
        if self._latencies is None:
            selection = self.selected("mean_latency_ms")
            values, codes = selection.values, selection.code
            arms = len(self.rows.arms)
            if arms == 1:
                split = [values]
            elif arms <= 4:  # a mask per arm beats a sort for a few arms
                split = [values[codes == code] for code in range(arms)]
            else:  # a stable sort of small ints is a radix sort: one pass, then slices
                order = np.argsort(codes, kind="stable")
                bounds = np.cumsum(np.bincount(codes, minlength=arms))[:-1]
                split = np.split(values[order], bounds)
            self._latencies = [_latency_figures(x, self.alpha) for x in split]
        return self._latencies[code]

    def _quantile(self, metric: str, code: int) -> MetricStat:
        """The arm's 99th percentile latency (linear interpolation, as ``np.percentile``)
        and its distribution-free interval at ``1 − alpha/2``."""
        x = self._latency(code)
        if x.n == 0:
            return MetricStat(metric, "quantile", 0, math.nan)
        return MetricStat(metric, "quantile", x.n, x.p99, x.p99, low=x.low, high=x.high)

    def latency(self, code: int) -> dict[str, float]:
        """The arm's latency p50, p95, p99 and mean (ms; NaN without latencies)."""
        x = self._latency(code)
        return {"p50": x.p50, "p95": x.p95, "p99": x.p99, "mean": x.mean}

    def scores(self, code: int) -> Floats:
        """The finite outputs of the arm's own predictions."""
        r = self.rows
        mask = (r.code == code) & r.own & np.isfinite(r.output)
        out: Floats = r.output[mask]
        return out

    def shift(self, champion: int, arm: int) -> tuple[float, int, int]:
        """PSI of the arm's scores against the champion's, over bins cut at the
        champion's score deciles, and how many scores each has (NaN without scores)."""
        reference, current = self.scores(champion), self.scores(arm)
        if len(reference) == 0 or len(current) == 0:
            return math.nan, len(reference), len(current)
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, SHIFT_BINS + 1)[1:-1]))
        bins = len(edges) + 1
        ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=bins)
        cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=bins)
        return psi(shares(ref), shares(cur)), len(reference), len(current)


class _Latency(NamedTuple):
    """An arm's ``n`` finite latencies: percentiles, mean, and the distribution-free
    interval ``[low, high]`` of the 99th percentile (NaN without latencies)."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    low: float
    high: float


_PERCENTILES = (50, 95, 99)


def _latency_figures(x: Floats, alpha: float) -> _Latency:
    """The figures of ``x`` from one ``np.partition`` at every order statistic they
    read; the percentiles interpolate as ``np.percentile`` does ("linear"), with its
    arithmetic, so they are the same numbers.

    >>> x = np.random.default_rng(0).exponential(size=1001)
    >>> f = _latency_figures(x, 0.05)
    >>> [f.p50, f.p95, f.p99] == np.percentile(x, [50, 95, 99]).tolist()
    True
    """
    n = len(x)
    if n == 0:
        return _Latency(0, *(math.nan,) * 6)
    low_rank, high_rank = quantile_ranks(n, 0.99, alpha / 2)
    q = np.true_divide(np.asarray(_PERCENTILES, np.float64), 100)
    virtual = (n - 1) * q  # numpy's "linear" virtual index
    floor = np.floor(virtual)
    gamma = virtual - floor
    previous = floor.astype(np.int64)
    following = previous + 1
    last = virtual >= n - 1
    previous[last] = following[last] = n - 1
    ranks = [k - 1 for k in (low_rank, high_rank) if 1 <= k <= n]
    part = np.partition(x, sorted({*previous.tolist(), *following.tolist(), *ranks}))
    below, above = part[previous], part[following]
    diff = above - below
    value = np.where(gamma >= 0.5, above - diff * (1 - gamma), below + diff * gamma)
    p50, p95, p99 = (float(v) for v in value)
    return _Latency(
        n, p50, p95, p99, float(x.mean()),
        low=float(part[low_rank - 1]) if low_rank >= 1 else -math.inf,
        high=float(part[high_rank - 1]) if high_rank <= n else math.inf,
    )  # fmt: skip


def higher_is_better(metric: str) -> bool:
    return METRICS[metric].higher_is_better
