"""Dataset drift: a reference fitted once over many columns, scored against windows.

A :class:`DriftMethod` says *what* is measured on a column (statistic and threshold);
:func:`score_drift` computes it. Defaults are effect sizes, which do not flag negligible
shifts just because a window is large:

=============  =========================  =========  ======================================
column type    statistic                  threshold  reads as
=============  =========================  =========  ======================================
numeric        ``wasserstein`` (normed)   0.1        the mass moved, in reference std units
categorical    ``jensen_shannon``         0.1        JS distance of the category shares
=============  =========================  =========  ======================================

Any column may choose another statistic: ``psi`` (0.2), ``jensen_shannon`` (0.1),
``hellinger`` (0.1), ``kl`` (0.1), ``linf`` (0.1, categorical) — numeric columns are then
binned on the reference's deciles — or a p-value test, ``ks`` (numeric), ``chi_square``
or ``g_test`` (categorical), whose threshold is the false discovery rate: the p-values
of all tested columns are adjusted together (Benjamini–Hochberg) and a column drifts
when its adjusted p-value is below the threshold (0.05).

Dataset drift is the share of scored columns that drifted, optionally weighted by
feature importance; the dataset drifts when that share reaches ``dataset_share`` (0.5).
A column that cannot be scored (empty window, all nulls, an error) is reported with its
status and reason, never raised, and does not count in the share.

>>> import pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(0, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
>>> cur = pd.DataFrame({"x": rng.normal(1, 1, 2000), "c": rng.choice(["a", "b"], 2000)})
>>> reference = DriftReference.fit(ref, numeric=["x"], categorical=["c"])
>>> result = score_drift(reference, cur)
>>> [(c.column, c.method, c.status) for c in result.columns]
[('x', 'wasserstein', 'drift'), ('c', 'jensen_shannon', 'ok')]
>>> result.share, result.drifted
(0.5, True)
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from prodml.core._monitor_metrics import NUMERIC_DRIFT_STATISTICS
from prodml.core.errors import SchemaError
from prodml.stats import (
    CategoricalProfile,
    NumericProfile,
    aligned,
    benjamini_hochberg,
    binned,
    chi_square,
    g_test,
    hellinger,
    jensen_shannon,
    kl,
    ks,
    linf,
    psi,
    wasserstein,
)

__all__ = [
    "DEFAULT_METHODS",
    "ColumnDrift",
    "DatasetDrift",
    "DriftMethod",
    "DriftReference",
    "score_drift",
]

ColumnKind = Literal["numeric", "categorical"]

#: Statistics that give a p-value (thresholded after Benjamini–Hochberg adjustment).
PVALUE_METHODS = frozenset({"ks", "chi_square", "g_test"})
_NUMERIC_METHODS = frozenset(NUMERIC_DRIFT_STATISTICS)
_CATEGORICAL_METHODS = frozenset(
    {"jensen_shannon", "psi", "hellinger", "kl", "linf", "chi_square", "g_test"}
)
_DEFAULT_THRESHOLDS = {
    "wasserstein": 0.1, "psi": 0.2, "jensen_shannon": 0.1, "hellinger": 0.1, "kl": 0.1,
    "linf": 0.1, "ks": 0.05, "chi_square": 0.05, "g_test": 0.05,
}  # fmt: skip
#: Reference-quantile bins for binned statistics on numeric columns.
DEFAULT_BINS = 10


@dataclass(frozen=True)
class DriftMethod:
    """The statistic scored on a column and its threshold (default per statistic)."""

    statistic: str
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.statistic not in _DEFAULT_THRESHOLDS:
            known = ", ".join(sorted(_DEFAULT_THRESHOLDS))
            raise SchemaError(
                f"drift method: unknown statistic {self.statistic!r}; expected one of {known}"
            )
        if self.threshold is not None and not (
            self.threshold > 0 and math.isfinite(self.threshold)
        ):
            raise SchemaError(
                f"drift method {self.statistic!r}: threshold must be a positive number, got {self.threshold!r}"
            )

    @property
    def limit(self) -> float:
        return _DEFAULT_THRESHOLDS[self.statistic] if self.threshold is None else self.threshold

    @property
    def is_test(self) -> bool:
        return self.statistic in PVALUE_METHODS

    def check(self, column: str, kind: ColumnKind) -> None:
        allowed = _NUMERIC_METHODS if kind == "numeric" else _CATEGORICAL_METHODS
        if self.statistic not in allowed:
            raise SchemaError(
                f"column {column!r}: statistic {self.statistic!r} does not apply to a {kind} "
                f"column; expected one of {', '.join(sorted(allowed))}"
            )


#: The default statistic per column type.
DEFAULT_METHODS: dict[ColumnKind, DriftMethod] = {
    "numeric": DriftMethod("wasserstein"),
    "categorical": DriftMethod("jensen_shannon"),
}


@dataclass(frozen=True)
class DriftReference:
    """Profiles of the reference's columns, fitted once, stored as bytes."""

    numeric: Mapping[str, NumericProfile]
    categorical: Mapping[str, CategoricalProfile]
    rows: int

    @classmethod
    def fit(
        cls,
        frame: Any,
        *,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        bins: int = DEFAULT_BINS,
        resolution: int | None = None,
        threads: int = 2,
    ) -> DriftReference:
        """Profile ``numeric`` and ``categorical`` columns of ``frame`` (a pandas
        DataFrame or an Arrow table); numeric profiles get ``bins`` quantile bins."""
        names = _column_names(frame)
        missing = [c for c in [*numeric, *categorical] if c not in names]
        if missing:
            raise SchemaError(f"drift reference: columns {missing} are not in the frame")
        with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
            nums = {
                c: pool.submit(NumericProfile.fit, frame[c], bins=bins, resolution=resolution)
                for c in numeric
            }
            cats = {c: pool.submit(CategoricalProfile.fit, frame[c]) for c in categorical}
            return cls(
                {c: f.result() for c, f in nums.items()},
                {c: f.result() for c, f in cats.items()},
                _row_count(frame),
            )

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def kind(self, column: str) -> ColumnKind:
        return "numeric" if column in self.numeric else "categorical"

    def to_bytes(self) -> bytes:
        """A zip of one entry per column plus a manifest (no pickle)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            manifest = {
                "rows": self.rows,
                "numeric": list(self.numeric),
                "categorical": list(self.categorical),
            }
            archive.writestr("manifest.json", json.dumps(manifest))
            for i, profile in enumerate(self.numeric.values()):
                archive.writestr(f"numeric/{i}.npz", profile.to_bytes())
            for i, cat in enumerate(self.categorical.values()):
                archive.writestr(f"categorical/{i}.json", cat.to_json())
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DriftReference:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            numeric = {
                name: NumericProfile.from_bytes(archive.read(f"numeric/{i}.npz"))
                for i, name in enumerate(manifest["numeric"])
            }
            categorical = {
                name: CategoricalProfile.from_json(archive.read(f"categorical/{i}.json").decode())
                for i, name in enumerate(manifest["categorical"])
            }
        return cls(numeric, categorical, int(manifest["rows"]))


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift in one window. ``status`` is ``ok``, ``drift``, ``empty`` (no
    usable values on one side) or ``error``; ``value`` is the statistic (a p-value
    test's statistic, with ``pvalue`` and its BH-adjusted ``adjusted_pvalue``)."""

    column: str
    kind: ColumnKind
    method: str
    value: float | None
    threshold: float
    status: str
    pvalue: float | None = None
    adjusted_pvalue: float | None = None
    reason: str | None = None
    rows: int = 0
    missing: int = 0

    @property
    def drifted(self) -> bool:
        return self.status == "drift"


@dataclass(frozen=True)
class DatasetDrift:
    """Every column's drift and the dataset-level verdict."""

    columns: list[ColumnDrift]
    share: float | None
    threshold: float
    rows: int
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.share is not None and self.share >= self.threshold

    def top(self, k: int = 5) -> list[ColumnDrift]:
        """The ``k`` drifted columns with the largest statistic (smallest p-value)."""
        drifted = [c for c in self.columns if c.drifted]

        def strength(c: ColumnDrift) -> float:
            return -(c.adjusted_pvalue or 0.0) if c.pvalue is not None else (c.value or 0.0)

        return sorted(drifted, key=strength, reverse=True)[:k]


def _column_names(frame: Any) -> set[str]:
    names = getattr(frame, "column_names", None)  # Arrow
    return set(names if names is not None else frame.columns)


def _row_count(frame: Any) -> int:
    return int(getattr(frame, "num_rows", None) or len(frame))


def score_drift(
    reference: DriftReference,
    frame: Any,
    *,
    methods: Mapping[str, DriftMethod] | None = None,
    importance: Mapping[str, float] | None = None,
    dataset_share: float = 0.5,
    resolution: int | None = None,
    threads: int = 2,
) -> DatasetDrift:
    """Score every reference column present in ``frame`` (pandas or Arrow) against the
    reference, with per-column ``methods`` (default :data:`DEFAULT_METHODS`)."""
    methods = dict(methods or {})
    unknown = [c for c in methods if c not in reference.numeric and c not in reference.categorical]
    if unknown:
        raise SchemaError(f"drift methods name columns {unknown} that the reference does not hold")
    chosen = {c: methods.get(c, DEFAULT_METHODS[reference.kind(c)]) for c in reference.columns}
    for column, method in chosen.items():
        method.check(column, reference.kind(column))
    names = _column_names(frame)
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        futures = {
            c: pool.submit(_score_column, reference, frame, c, chosen[c], resolution)
            for c in reference.columns
            if c in names
        }
        results = [
            futures[c].result()
            if c in futures
            else ColumnDrift(
                c,
                reference.kind(c),
                chosen[c].statistic,
                None,
                chosen[c].limit,
                "error",
                reason="the column is missing from the window",
            )
            for c in reference.columns
        ]
    results = _adjust(results, chosen)
    return DatasetDrift(
        results,
        _share(results, importance),
        dataset_share,
        _row_count(frame),
        dict(importance or {}),
    )


def _score_column(
    reference: DriftReference, frame: Any, column: str, method: DriftMethod, resolution: int | None
) -> ColumnDrift:
    kind = reference.kind(column)
    base = ColumnDrift(column, kind, method.statistic, None, method.limit, "error")
    try:
        if kind == "numeric":
            ref_n = reference.numeric[column]
            cur_n = NumericProfile.fit(frame[column], resolution=resolution)
            rows, missing = cur_n.rows, cur_n.missing + cur_n.infinite
            if ref_n.n == 0 or cur_n.n == 0:
                side = "reference" if ref_n.n == 0 else "window"
                return _with(
                    base,
                    status="empty",
                    reason=f"the {side} has no finite values",
                    rows=rows,
                    missing=missing,
                )
            value, pvalue = _numeric_statistic(method.statistic, ref_n, cur_n)
        else:
            ref_c = reference.categorical[column]
            cur_c = CategoricalProfile.fit(frame[column])
            rows, missing = cur_c.rows, cur_c.missing
            if ref_c.n == 0 or cur_c.n == 0:
                side = "reference" if ref_c.n == 0 else "window"
                return _with(
                    base,
                    status="empty",
                    reason=f"the {side} has no non-null values",
                    rows=rows,
                    missing=missing,
                )
            value, pvalue = _categorical_statistic(method.statistic, ref_c, cur_c)
    except Exception as exc:  # one broken column never breaks the others
        return _with(base, reason=f"{type(exc).__name__}: {exc}")
    if not math.isfinite(value):
        return _with(
            base,
            value=None,
            reason=f"the statistic is not finite ({value})",
            rows=rows,
            missing=missing,
        )
    status = "ok" if method.is_test else ("drift" if value >= method.limit else "ok")
    return _with(base, value=value, pvalue=pvalue, status=status, rows=rows, missing=missing)


def _with(column: ColumnDrift, **changes: Any) -> ColumnDrift:
    return ColumnDrift(**{**column.__dict__, **changes})


def _numeric_statistic(
    name: str, ref: NumericProfile, cur: NumericProfile
) -> tuple[float, float | None]:
    if name == "wasserstein":
        return wasserstein(ref, cur, normed=True), None
    if name == "ks":
        statistic, pvalue = ks(ref, cur)
        return statistic, pvalue
    if not len(ref.bin_counts):
        ref = ref.with_bins(DEFAULT_BINS)
    p, q = binned(ref, cur)
    return _divergence(name)(p, q), None


def _categorical_statistic(
    name: str, ref: CategoricalProfile, cur: CategoricalProfile
) -> tuple[float, float | None]:
    if name == "chi_square":
        return chi_square(ref, cur)
    if name == "g_test":
        return g_test(ref, cur)
    _, p, q = aligned(ref, cur)
    return _divergence(name)(p, q), None


def _divergence(name: str) -> Any:
    return {
        "psi": psi,
        "jensen_shannon": jensen_shannon,
        "hellinger": hellinger,
        "kl": kl,
        "linf": linf,
    }[name]


def _adjust(results: list[ColumnDrift], chosen: Mapping[str, DriftMethod]) -> list[ColumnDrift]:
    """Benjamini–Hochberg across the columns scored by a p-value test."""
    tested = [i for i, r in enumerate(results) if r.pvalue is not None]
    if not tested:
        return results
    adjusted, _ = benjamini_hochberg([float(results[i].pvalue or 0.0) for i in tested])
    out = list(results)
    for i, q in zip(tested, adjusted.tolist(), strict=True):
        r = results[i]
        drifted = q < chosen[r.column].limit
        out[i] = _with(r, adjusted_pvalue=q, status="drift" if drifted else "ok")
    return out


def _share(results: list[ColumnDrift], importance: Mapping[str, float] | None) -> float | None:
    scored = [r for r in results if r.status in ("ok", "drift")]
    if not scored:
        return None
    weights = np.array(
        [float((importance or {}).get(r.column, 1.0 if not importance else 0.0)) for r in scored]
    )
    if weights.sum() <= 0:
        weights = np.ones(len(scored))
    drifted = np.array([r.drifted for r in scored], dtype=np.float64)
    return float(np.dot(weights, drifted) / weights.sum())
