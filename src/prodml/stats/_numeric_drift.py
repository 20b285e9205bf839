"""Drift between two numeric samples, from profiles fitted once.

:meth:`NumericProfile.fit` sorts a column once and keeps its distinct finite values
with their counts (the whole empirical distribution), its missing and infinite counts,
moments, and — for a reference — quantile bin edges with the reference's bin counts.
A window's column is fitted the same way (no bins), and every statistic reads the two
profiles: nothing is sorted twice, and the reference is never touched again.

A column with more than ``resolution`` distinct values is *compacted*: its quantile
function is cut into ``resolution`` runs of equal rank width, each kept as its median
value with the number of rows it stands for. Every CDF-based statistic then moves by at
most ``1 / resolution`` (KS) or ``(max - min) / resolution`` (Wasserstein); profiles
with at most ``resolution`` distinct values are exact, and their statistics equal
SciPy's (``exact`` says which).

* :func:`ks` — two-sample Kolmogorov–Smirnov statistic and p-value (SciPy's exact
  method up to 10,000 rows a side, its asymptotic ``kstwo`` beyond, as ``ks_2samp``);
* :func:`wasserstein` — earth mover's distance, optionally divided by the reference's
  standard deviation (population, ddof 0) so that it reads in reference units;
* :func:`binned` — reference and current shares over the reference's quantile bins
  (open at both ends), for :mod:`~prodml.stats._divergences` (PSI, Jensen–Shannon, …).

>>> rng = np.random.default_rng(0)
>>> ref = NumericProfile.fit(rng.normal(0, 1, 5000), bins=10)
>>> cur = NumericProfile.fit(rng.normal(0.5, 1, 5000))
>>> round(wasserstein(ref, cur, normed=True), 3)
0.524
>>> statistic, pvalue = ks(ref, cur)
>>> round(statistic, 4), pvalue < 1e-9
(0.2178, True)
>>> p, q = binned(ref, cur)
>>> p.round(2).tolist()
[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
>>> NumericProfile.from_bytes(ref.to_bytes()) == ref
True
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

__all__ = ["DEFAULT_RESOLUTION", "NumericProfile", "as_float_array", "binned", "ks", "wasserstein"]

#: Distinct values a profile keeps exactly; more are compacted to this many.
DEFAULT_RESOLUTION = 100_000

#: Floor of the reference standard deviation that normed Wasserstein divides by.
_MIN_STD = 0.001

#: Largest sample (either side) for which KS uses SciPy's exact p-value, as ``ks_2samp``.
_KS_EXACT_MAX = 10_000

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


def as_float_array(values: ArrayLike) -> Floats:
    """``values`` as a 1-D float64 array, nulls (None, NA, NaN) as NaN: accepts NumPy
    arrays, lists, and pandas / Arrow columns (anything with ``to_numpy``)."""
    to_numpy = getattr(values, "to_numpy", None)
    if to_numpy is not None and not isinstance(values, np.ndarray):
        try:
            array = to_numpy(dtype="float64", na_value=np.nan)  # pandas
        except TypeError:
            array = to_numpy(zero_copy_only=False)  # pyarrow: nulls become NaN
        values = array
    array = np.asarray(values)
    if array.dtype == object:
        array = np.array([np.nan if v is None else v for v in array.ravel()], dtype=np.float64)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"a numeric column must be 1-D, got shape {array.shape}")
    return array


def _owned(array: Floats, source: object) -> bool:
    """Whether ``array`` is a private copy no caller can see, safe to sort in place: made
    from a list, or a writeable array made from an (immutable) Arrow column."""
    if isinstance(source, list | tuple):
        return True
    return hasattr(source, "null_count") and bool(array.flags.writeable)


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """The empirical distribution of one numeric column (see the module docstring).

    ``values`` are the sorted distinct finite values (or, compacted, run medians) and
    ``counts`` the rows each stands for; ``n`` is their total, ``missing`` counts nulls
    and NaN, ``infinite`` ±inf. ``mean`` and ``std`` (ddof 0), ``min`` and ``max`` are
    exact, of the finite values. ``edges`` are the inner quantile-bin edges (bin *i*
    holds ``edges[i-1] <= x < edges[i]``, open at both ends) and ``bin_counts`` the
    rows per bin; both are empty unless fitted with ``bins``.
    """

    values: Floats
    counts: Ints
    n: int
    missing: int
    infinite: int
    mean: float
    std: float
    min: float
    max: float
    exact: bool
    edges: Floats = field(default_factory=lambda: np.empty(0))
    bin_counts: Ints = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @classmethod
    def fit(
        cls, values: ArrayLike, *, bins: int | None = None, resolution: int | None = None
    ) -> NumericProfile:
        """Profile ``values``; ``bins`` quantile bins for a reference (duplicate edges
        of discrete data merge, so there may be fewer); compacted past ``resolution``
        distinct values (default :data:`DEFAULT_RESOLUTION`; ``0`` keeps everything)."""
        x = as_float_array(values)
        finite = np.isfinite(x)
        if finite.all():
            missing = infinite = 0
            if _owned(x, values):
                x.sort()  # a private copy (e.g. from Arrow or a list): sort in place
            else:
                x = np.sort(x)
        else:
            missing = int(np.isnan(x).sum())
            infinite = len(x) - int(finite.sum()) - missing
            x = np.sort(x[finite])
        n = len(x)
        limit = DEFAULT_RESOLUTION if resolution is None else resolution
        if n:
            mean = float(x.mean())
            deviations = x - mean
            std = math.sqrt(float(np.dot(deviations, deviations)) / n)
            del deviations
            lo, hi = float(x[0]), float(x[-1])
            flags = np.empty(n, dtype=bool)
            flags[0] = True
            np.not_equal(x[1:], x[:-1], out=flags[1:])
            distinct = int(np.count_nonzero(flags))
        else:
            mean = std = lo = hi = math.nan
            distinct = 0
        exact = not (limit and distinct > limit)
        if not exact:
            support, counts = _compact(x, limit)
        elif n:
            starts = np.flatnonzero(flags)
            support = x[starts]
            counts = np.diff(starts, append=n).astype(np.int64)
        else:
            support, counts = np.empty(0), np.empty(0, dtype=np.int64)
        profile = cls(support, counts, n, missing, infinite, mean, std, lo, hi, exact)
        return profile.with_bins(bins) if bins else profile

    def with_bins(self, bins: int) -> NumericProfile:
        """This profile with ``bins`` reference-quantile bins (fewer when edges repeat)."""
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        if self.n == 0 or bins == 1:
            edges = np.empty(0)
        else:
            cum = np.cumsum(self.counts)
            ranks = np.arange(1, bins) * (self.n / bins)
            edges = np.unique(
                self.values[np.searchsorted(cum, ranks, side="right").clip(0, len(cum) - 1)]
            )
            edges = edges[edges > self.values[0]]  # an edge at the minimum leaves bin 0 empty
        return _replace(self, edges=edges, bin_counts=self.count_bins(edges))

    def count_bins(self, edges: Floats) -> Ints:
        """Rows of this profile in each bin of ``edges`` (``len(edges) + 1`` bins)."""
        index = np.searchsorted(edges, self.values, side="right")
        return np.bincount(index, weights=self.counts, minlength=len(edges) + 1).astype(np.int64)

    @property
    def rows(self) -> int:
        """All rows, finite or not."""
        return self.n + self.missing + self.infinite

    def merge(self, other: NumericProfile, *, resolution: int | None = None) -> NumericProfile:
        """The profile of both columns together (e.g. two partitions of one window);
        exact when both are and the union fits in ``resolution``. Bins are refitted
        with as many bins as ``self`` had."""
        values = np.concatenate([self.values, other.values])
        counts = np.concatenate([self.counts, other.counts])
        order = np.argsort(values, kind="stable")
        values, counts = values[order], counts[order]
        support, starts = np.unique(values, return_index=True)
        counts = np.add.reduceat(counts, starts) if len(starts) else counts
        n = self.n + other.n
        if n:
            mean = (self.mean * self.n if self.n else 0.0) + (
                other.mean * other.n if other.n else 0.0
            )
            mean /= n
            ss = sum(p.n * (p.std**2 + (p.mean - mean) ** 2) for p in (self, other) if p.n)
            std = math.sqrt(ss / n)
        else:
            mean = std = math.nan
        limit = DEFAULT_RESOLUTION if resolution is None else resolution
        exact = self.exact and other.exact and not (limit and len(support) > limit)
        if limit and len(support) > limit:
            support, counts = _compact_weighted(support, counts.astype(np.int64), n, limit)
        merged = NumericProfile(
            support, counts.astype(np.int64), n, self.missing + other.missing,
            self.infinite + other.infinite, mean, std,
            float(np.fmin(self.min, other.min)), float(np.fmax(self.max, other.max)), exact,
        )  # fmt: skip
        return merged.with_bins(len(self.edges) + 1) if len(self.bin_counts) else merged

    def to_bytes(self) -> bytes:
        """A portable encoding (NumPy ``.npz``, no pickle) for :meth:`from_bytes`."""
        buffer = io.BytesIO()
        scalars = np.array(
            [self.n, self.missing, self.infinite, self.mean, self.std, self.min, self.max,
             float(self.exact)], dtype=np.float64,
        )  # fmt: skip
        np.savez(
            buffer, values=self.values, counts=self.counts, scalars=scalars,
            edges=self.edges, bin_counts=self.bin_counts,
        )  # fmt: skip
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericProfile:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n, missing, infinite, mean, std, lo, hi, exact = z["scalars"].tolist()
            return cls(
                z["values"], z["counts"], int(n), int(missing), int(infinite), mean, std,
                lo, hi, bool(exact), z["edges"], z["bin_counts"],
            )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericProfile):
            return NotImplemented
        same = (self.n, self.missing, self.infinite, self.exact) == (
            other.n, other.missing, other.infinite, other.exact,
        )  # fmt: skip
        arrays = all(
            np.array_equal(a, b, equal_nan=True)
            for a, b in (
                (self.values, other.values), (self.counts, other.counts),
                (self.edges, other.edges), (self.bin_counts, other.bin_counts),
                (np.array([self.mean, self.std, self.min, self.max]),
                 np.array([other.mean, other.std, other.min, other.max])),
            )
        )  # fmt: skip
        return same and arrays

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"NumericProfile(n={self.n}, missing={self.missing}, infinite={self.infinite}, "
            f"distinct={len(self.values)}, exact={self.exact}, bins={len(self.bin_counts)})"
        )


def _replace(profile: NumericProfile, **changes: Any) -> NumericProfile:
    fields = {name: getattr(profile, name) for name in profile.__dataclass_fields__}
    return NumericProfile(**{**fields, **changes})


def _runs(n: int, limit: int) -> tuple[Ints, Ints]:
    """0-based median rank and width of ``limit`` runs of equal rank width over ``n``."""
    bounds = (np.arange(limit + 1, dtype=np.float64) * (n / limit)).round().astype(np.int64)
    widths = np.diff(bounds)
    keep = widths > 0
    medians = (bounds[:-1] + bounds[1:] - 1) // 2
    return medians[keep], widths[keep]


def _merge_equal(values: Floats, widths: Ints) -> tuple[Floats, Ints]:
    """Sorted ``values`` with repeats merged, their widths added."""
    distinct, starts = np.unique(values, return_index=True)
    return distinct, np.add.reduceat(widths, starts).astype(np.int64)


def _compact(x: Floats, limit: int) -> tuple[Floats, Ints]:
    """``limit`` runs of equal rank width of the sorted sample ``x``, each as its median
    value and its row count (runs sharing a value merge)."""
    medians, widths = _runs(len(x), limit)
    return _merge_equal(x[medians], widths)


def _compact_weighted(support: Floats, counts: Ints, n: int, limit: int) -> tuple[Floats, Ints]:
    """As :func:`_compact`, for distinct values with counts."""
    medians, widths = _runs(n, limit)
    return _merge_equal(support[np.searchsorted(np.cumsum(counts), medians, side="right")], widths)


def _require(reference: NumericProfile, current: NumericProfile, statistic: str) -> None:
    if reference.n == 0 or current.n == 0:
        side = "reference" if reference.n == 0 else "current"
        raise ValueError(f"{statistic}: the {side} sample has no finite values")


def wasserstein(
    reference: NumericProfile, current: NumericProfile, *, normed: bool = False
) -> float:
    """Earth mover's distance between the two samples (as
    :func:`scipy.stats.wasserstein_distance`), divided by the reference's standard
    deviation when ``normed`` (population, ddof 0; at least 0.001, as Evidently does, so
    that a constant reference gives a large, finite value for any move).

    Computed from the quantile functions: with cumulative counts ``A`` (reference,
    ``n`` rows) and ``B`` (current, ``m`` rows) scaled to the common grid ``n·m``, one
    integer sort of their union gives every segment on which both quantile functions
    are constant.
    """
    _require(reference, current, "wasserstein")
    n, m = reference.n, current.n
    a = np.cumsum(reference.counts) * m
    b = np.cumsum(current.counts) * n
    tagged = np.concatenate([a << 1, (b << 1) | 1])
    tagged.sort()
    is_b = (tagged & 1).astype(np.int64)
    grid = tagged >> 1
    widths = np.diff(grid, prepend=0)
    before_b = np.cumsum(is_b) - is_b  # b-points strictly before each position
    before_a = np.arange(len(tagged)) - before_b
    ia = np.minimum(before_a, len(a) - 1)
    ib = np.minimum(before_b, len(b) - 1)
    total = float(np.dot(widths, np.abs(reference.values[ia] - current.values[ib])))
    distance = total / (float(n) * float(m))
    if normed:
        distance /= max(reference.std, _MIN_STD)
    return distance


def ks(reference: NumericProfile, current: NumericProfile) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and two-sided p-value, equal to
    :func:`scipy.stats.ks_2samp`'s (``method="auto"``) for exact profiles."""
    _require(reference, current, "ks")
    n, m = reference.n, current.n
    if max(n, m) <= _KS_EXACT_MAX and reference.exact and current.exact:
        with warnings.catch_warnings():  # SciPy falls back to its asymptotic p-value itself
            warnings.filterwarnings(
                "ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning
            )
            result = sps.ks_2samp(
                np.repeat(reference.values, reference.counts),
                np.repeat(current.values, current.counts),
            )
        return float(result.statistic), float(result.pvalue)
    cum_r, cum_c = np.cumsum(reference.counts), np.cumsum(current.counts)
    at_c = np.searchsorted(reference.values, current.values, side="right")
    f_r_at_c = np.where(at_c > 0, cum_r[np.maximum(at_c - 1, 0)], 0) / n
    at_r = np.searchsorted(current.values, reference.values, side="right")
    f_c_at_r = np.where(at_r > 0, cum_c[np.maximum(at_r - 1, 0)], 0) / m
    d = max(
        float(np.max(np.abs(f_r_at_c - cum_c / m))), float(np.max(np.abs(cum_r / n - f_c_at_r)))
    )
    big, small = max(float(n), float(m)), min(float(n), float(m))
    pvalue = float(sps.kstwo.sf(d, np.round(big * small / (big + small))))
    return d, min(max(pvalue, 0.0), 1.0)


def binned(reference: NumericProfile, current: NumericProfile) -> tuple[Floats, Floats]:
    """Shares of the reference and of the current sample over the reference's bins."""
    if not len(reference.bin_counts):
        raise ValueError("binned: the reference profile has no bins (fit it with bins=...)")
    p = reference.bin_counts / max(reference.n, 1)
    q = current.count_bins(reference.edges) / max(current.n, 1)
    return p.astype(np.float64), q.astype(np.float64)
