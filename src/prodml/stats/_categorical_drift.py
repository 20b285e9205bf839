"""Drift between two categorical samples, from profiles fitted once.

:meth:`CategoricalProfile.fit` counts a column's categories once (nulls apart); the
statistics align two profiles on the union of their categories, so a category new in
the current window is a bin of its own (reference count 0), not an error.

* :func:`chi_square` and :func:`g_test` — the 2 × K contingency test of homogeneity
  (reference vs current counts), as :func:`scipy.stats.chi2_contingency` without
  continuity correction, Pearson's or the log-likelihood ratio;
* :func:`aligned` — reference and current shares over the union of categories, for
  :mod:`~prodml.stats._divergences` (Jensen–Shannon, PSI, Hellinger, L-infinity, KL).

>>> ref = CategoricalProfile.fit(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
>>> cur = CategoricalProfile.fit(["a"] * 30 + ["b"] * 30 + ["c"] * 30 + ["d"] * 10 + [None])
>>> cur.missing, cur.n
(1, 100)
>>> keys, p, q = aligned(ref, cur)
>>> keys, p.tolist(), q.tolist()
(['a', 'b', 'c', 'd'], [0.5, 0.3, 0.2, 0.0], [0.3, 0.3, 0.3, 0.1])
>>> statistic, pvalue = chi_square(ref, cur)
>>> round(statistic, 4), round(pvalue, 6)
(17.0, 0.000707)
>>> CategoricalProfile.from_json(ref.to_json()) == ref
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

__all__ = ["CategoricalProfile", "aligned", "chi_square", "g_test"]

Floats = NDArray[np.float64]


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


@dataclass(frozen=True)
class CategoricalProfile:
    """Counts of one categorical column: ``categories`` (sorted, as strings) with their
    ``counts``; ``n`` non-null rows; ``missing`` nulls (None, NA, NaN)."""

    categories: tuple[str, ...]
    counts: tuple[int, ...]
    n: int
    missing: int

    @classmethod
    def fit(cls, values: Iterable[Any]) -> CategoricalProfile:
        """Count ``values`` (a pandas or Arrow column, a NumPy array or any iterable);
        non-string categories are kept as their ``str``."""
        pairs: dict[str, int]
        value_counts = getattr(values, "value_counts", None)
        if value_counts is not None and hasattr(values, "null_count"):  # Arrow: vectorised
            counted = value_counts().to_pylist()
            missing = int(values.null_count)
            pairs = {}
            for item in counted:
                value = item["values"]
                if value is not None and not (isinstance(value, float) and value != value):
                    name = str(value)
                    pairs[name] = pairs.get(name, 0) + int(item["counts"])
                else:
                    missing += int(item["counts"]) if value is not None else 0
        elif value_counts is not None and hasattr(values, "isna"):  # pandas: vectorised
            counted = value_counts(dropna=True)
            missing = int(values.isna().sum())
            pairs = {}
            for key, count in zip(counted.index.tolist(), counted.tolist(), strict=True):
                name = str(key)
                pairs[name] = pairs.get(name, 0) + int(count)
        else:
            array = np.asarray(
                list(values) if not isinstance(values, np.ndarray) else values, dtype=object
            )
            nulls = np.fromiter((_is_null(v) for v in array), dtype=bool, count=len(array))
            missing = int(nulls.sum())
            keys, counts = np.unique(array[~nulls].astype(str), return_counts=True)
            pairs = dict(zip(keys.tolist(), counts.tolist(), strict=True))
        return cls.from_counts(pairs, missing)

    @classmethod
    def from_counts(cls, counts: dict[str, int], missing: int = 0) -> CategoricalProfile:
        """A profile from category counts (e.g. a frequent-items sketch or SQL);
        categories counted 0 (declared but unseen) are left out."""
        counts = {k: int(v) for k, v in counts.items() if v > 0}
        ordered = sorted(counts)
        return cls(
            tuple(ordered), tuple(int(counts[k]) for k in ordered), sum(counts.values()), missing
        )

    @property
    def rows(self) -> int:
        return self.n + self.missing

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        """The profile of both columns together."""
        counts = dict(zip(self.categories, self.counts, strict=True))
        for key, count in zip(other.categories, other.counts, strict=True):
            counts[key] = counts.get(key, 0) + count
        return CategoricalProfile.from_counts(counts, self.missing + other.missing)

    def to_json(self) -> str:
        return json.dumps(
            {
                "categories": list(self.categories),
                "counts": list(self.counts),
                "missing": self.missing,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CategoricalProfile:
        data = json.loads(text)
        return cls.from_counts(
            dict(zip(data["categories"], data["counts"], strict=True)), data["missing"]
        )


def aligned(
    reference: CategoricalProfile, current: CategoricalProfile
) -> tuple[list[str], Floats, Floats]:
    """The union of categories (sorted) and each side's shares over it."""
    keys = sorted(set(reference.categories) | set(current.categories))
    p, q = _counts(reference, keys), _counts(current, keys)
    return keys, p / max(reference.n, 1), q / max(current.n, 1)


def _counts(profile: CategoricalProfile, keys: list[str]) -> Floats:
    lookup = dict(zip(profile.categories, profile.counts, strict=True))
    return np.array([lookup.get(k, 0) for k in keys], dtype=np.float64)


def _table(reference: CategoricalProfile, current: CategoricalProfile, test: str) -> Floats:
    if reference.n == 0 or current.n == 0:
        side = "reference" if reference.n == 0 else "current"
        raise ValueError(f"{test}: the {side} sample has no non-null values")
    keys = sorted(set(reference.categories) | set(current.categories))
    table = np.vstack([_counts(reference, keys), _counts(current, keys)])
    return table[:, table.sum(axis=0) > 0]


def chi_square(reference: CategoricalProfile, current: CategoricalProfile) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity: statistic and p-value (1.0 when both
    samples hold a single, shared category)."""
    table = _table(reference, current, "chi_square")
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = sps.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def g_test(reference: CategoricalProfile, current: CategoricalProfile) -> tuple[float, float]:
    """The G-test (log-likelihood ratio) of homogeneity: statistic and p-value."""
    table = _table(reference, current, "g_test")
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = sps.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    return float(result.statistic), float(result.pvalue)
