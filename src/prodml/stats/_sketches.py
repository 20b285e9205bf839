"""Mergeable summaries for partitioned and streaming data: a summary of each partition
(or each flush of a stream), merged, describes the union.

* :class:`Histogram` — counts over fixed edges; merging adds counts, so it is exact.
* :class:`QuantileSketch` — Apache DataSketches KLL (rank error ~1.3% at ``k=200``,
  a few kB whatever the rows; randomised, so two runs may differ within that error) plus exact running moments; :meth:`QuantileSketch.profile`
  turns it into a compacted :class:`~prodml.stats.NumericProfile` for drift scoring.
* :class:`DistinctCount` — HyperLogLog (relative error ~1.6% at ``lg_k=12``).
* :class:`FrequentItems` — the Misra–Gries frequent-items sketch; every item whose
  share exceeds its error bound is found, with lower and upper bounds on its count.

DataSketches updates one item per call, so batches are aggregated with NumPy first
(one call per distinct value, not per row).

>>> h = Histogram.of([0.0, 1.0, 2.0], np.array([-1.0, 0.5, 0.5, 3.0, np.nan]))
>>> h.counts.tolist(), h.missing
([1, 2, 0, 1], 1)
>>> h.merge(Histogram.of([0.0, 1.0, 2.0], np.array([1.5]))).counts.tolist()
[1, 2, 1, 1]
>>> q = QuantileSketch()
>>> q.update(np.arange(1000.0))
>>> q.n, q.mean, q.min, q.max
(1000, 499.5, 0.0, 999.0)
>>> bool(abs(q.quantiles([0.5])[0] - 499.5) <= 1000 * q.rank_error)  # KLL is randomised
True
>>> d = DistinctCount()
>>> d.update(np.array(["a", "b", "a"]))
>>> round(d.estimate)
2
>>> f = FrequentItems()
>>> f.update(np.array(["x"] * 5 + ["y"]))
>>> f.counts()
{'x': 5, 'y': 1}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import datasketches as ds
import numpy as np
from numpy.typing import ArrayLike, NDArray

from prodml.stats._numeric_drift import NumericProfile, as_float_array

__all__ = ["DistinctCount", "FrequentItems", "Histogram", "QuantileSketch"]


class Histogram:
    """Counts of values over fixed ``edges`` (``len(edges) + 1`` bins, open at both
    ends: bin *i* holds ``edges[i-1] <= x < edges[i]``); NaN and nulls in ``missing``."""

    def __init__(self, edges: ArrayLike, counts: ArrayLike | None = None, missing: int = 0) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        if (
            self.edges.ndim != 1
            or not np.all(np.isfinite(self.edges))
            or not np.all(np.diff(self.edges) > 0)
        ):
            raise ValueError(
                "Histogram: edges must be a strictly increasing 1-D sequence of finite numbers"
            )
        size = len(self.edges) + 1
        self.counts = (
            np.zeros(size, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
        )
        if self.counts.shape != (size,):
            raise ValueError(f"Histogram: expected {size} counts, got shape {self.counts.shape}")
        self.missing = int(missing)

    @classmethod
    def of(cls, edges: ArrayLike, values: ArrayLike) -> Histogram:
        histogram = cls(edges)
        histogram.update(values)
        return histogram

    def update(self, values: ArrayLike) -> None:
        x = as_float_array(values)
        nan = np.isnan(x)
        self.missing += int(nan.sum())
        index = np.searchsorted(self.edges, x[~nan], side="right")
        self.counts += np.bincount(index, minlength=len(self.counts))

    def merge(self, other: Histogram) -> Histogram:
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("Histogram.merge: the two histograms have different edges")
        return Histogram(self.edges, self.counts + other.counts, self.missing + other.missing)

    @property
    def n(self) -> int:
        return int(self.counts.sum())


class QuantileSketch:
    """KLL quantile sketch of a numeric stream with exact count, mean and variance
    (Chan et al.'s pairwise update); NaN counted as missing, ±inf as infinite."""

    def __init__(self, k: int = 200) -> None:
        self.k = k
        self._kll = ds.kll_doubles_sketch(k)
        self.n = 0
        self.missing = 0
        self.infinite = 0
        self.mean = math.nan
        self._m2 = 0.0
        self.min = math.nan
        self.max = math.nan

    def update(self, values: ArrayLike) -> None:
        x = as_float_array(values)
        finite = np.isfinite(x)
        nan = np.isnan(x)
        self.missing += int(nan.sum())
        self.infinite += int((~finite & ~nan).sum())
        x = x[finite]
        if not len(x):
            return
        self._kll.update(x)
        self._combine(
            len(x),
            float(x.mean()),
            float(((x - x.mean()) ** 2).sum()),
            float(x.min()),
            float(x.max()),
        )

    def _combine(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        if self.n == 0:
            self.n, self.mean, self._m2, self.min, self.max = n, mean, m2, lo, hi
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self._m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        self.min, self.max = min(self.min, lo), max(self.max, hi)

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        merged = QuantileSketch(self.k)
        merged._kll.merge(self._kll)
        merged._kll.merge(other._kll)
        merged.missing = self.missing + other.missing
        merged.infinite = self.infinite + other.infinite
        for part in (self, other):
            if part.n:
                merged._combine(part.n, part.mean, part._m2, part.min, part.max)
        return merged

    @property
    def std(self) -> float:
        """Population standard deviation (ddof 0) of the finite values."""
        return math.sqrt(self._m2 / self.n) if self.n else math.nan

    @property
    def rank_error(self) -> float:
        """The sketch's normalised rank error (single quantile, 99% confidence)."""
        return float(self._kll.normalized_rank_error(False))

    def quantiles(self, levels: Sequence[float]) -> NDArray[np.float64]:
        if not self.n:
            return np.full(len(levels), np.nan)
        return np.asarray(self._kll.get_quantiles(list(levels)), dtype=np.float64)

    def profile(self, *, points: int = 1000, bins: int | None = None) -> NumericProfile:
        """A compacted profile: ``points`` quantiles at the midpoints of equal rank
        runs, each standing for ``n / points`` rows, with this sketch's exact moments."""
        if not self.n:
            return NumericProfile.fit(np.empty(0), bins=bins)
        points = min(points, self.n)
        bounds = np.round(np.arange(points + 1) * (self.n / points)).astype(np.int64)
        widths = np.diff(bounds)
        levels = (np.arange(points) + 0.5) / points
        values = self.quantiles(levels.tolist())
        support, starts = np.unique(values, return_index=True)
        counts = np.add.reduceat(widths, starts).astype(np.int64)
        profile = NumericProfile(
            support, counts, self.n, self.missing, self.infinite, self.mean, self.std,
            self.min, self.max, exact=False,
        )  # fmt: skip
        return profile.with_bins(bins) if bins else profile

    def to_bytes(self) -> bytes:
        return bytes(self._kll.serialize())


def _distinct(values: ArrayLike) -> tuple[NDArray[np.str_], NDArray[np.int64]]:
    """Distinct non-null values of ``values`` as strings, with their counts."""
    array = np.asarray(values, dtype=object)
    keep = np.fromiter(
        (v is not None and not (isinstance(v, float) and v != v) for v in array),
        dtype=bool,
        count=len(array),
    )
    keys, counts = np.unique(array[keep].astype(str), return_counts=True)
    return keys, counts.astype(np.int64)


class DistinctCount:
    """HyperLogLog estimate of the number of distinct non-null values."""

    def __init__(self, lg_k: int = 12) -> None:
        self.lg_k = lg_k
        self._union = ds.hll_union(lg_k)

    def update(self, values: ArrayLike) -> None:
        sketch = ds.hll_sketch(self.lg_k)
        for key in _distinct(values)[0].tolist():
            sketch.update(key)
        self._union.update(sketch)

    def merge(self, other: DistinctCount) -> DistinctCount:
        merged = DistinctCount(self.lg_k)
        merged._union.update(self._union.get_result())
        merged._union.update(other._union.get_result())
        return merged

    @property
    def estimate(self) -> float:
        return float(self._union.get_result().get_estimate())

    def bounds(self, stddevs: int = 2) -> tuple[float, float]:
        result = self._union.get_result()
        return float(result.get_lower_bound(stddevs)), float(result.get_upper_bound(stddevs))


class FrequentItems:
    """Frequent-items sketch of string values (``lg_max_map_size`` 10 → up to 768
    tracked items); counts are exact while fewer items than that were seen."""

    def __init__(self, lg_max_map_size: int = 10) -> None:
        self.lg_max_map_size = lg_max_map_size
        self._sketch = ds.frequent_strings_sketch(lg_max_map_size)

    def update(self, values: ArrayLike) -> None:
        keys, counts = _distinct(values)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            self._sketch.update(key, count)

    def merge(self, other: FrequentItems) -> FrequentItems:
        merged = FrequentItems(self.lg_max_map_size)
        merged._sketch.merge(self._sketch)
        merged._sketch.merge(other._sketch)
        return merged

    @property
    def total(self) -> int:
        return int(self._sketch.total_weight)

    @property
    def max_error(self) -> int:
        """Largest possible error of any reported count."""
        return int(self._sketch.get_epsilon_for_lg_size(self.lg_max_map_size) * self.total)

    def items(self) -> list[tuple[str, int, int, int]]:
        """(item, estimate, lower bound, upper bound), most frequent first; no item
        that is truly more frequent than :attr:`max_error` is left out."""
        rows = self._sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        return [(str(i), int(e), int(lo), int(hi)) for i, e, lo, hi in rows]

    def counts(self) -> dict[str, int]:
        """Estimated count of each tracked item."""
        return {item: estimate for item, estimate, _, _ in self.items()}
