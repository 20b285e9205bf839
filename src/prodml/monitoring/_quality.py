"""Data-quality checks of one window: per input feature, the missing rate against the
reference's, values outside the reference range, unseen categories, non-finite numbers
and text that is not a number; per window, contract violations and absent features;
per feature view, the age of the online features served.

Shares are flagged (status ``breach``) above the thresholds of ``[monitoring.quality]``,
which every result carries. The defaults:

* a **missing rate** above the reference's plus 0.10 (``missing_rate_increase``) and,
  for features often missing already, above 1.5× the reference's
  (``missing_rate_ratio``) — or once half the values present in the reference are gone.
  At the default ``min_rows`` (100) the standard error of a share is at most 0.05, so an
  increase of 0.10 is two standard errors in the smallest scored window, and ten more
  points of inputs silently imputed is a change worth a look for any model; the ratio
  keeps features that are often missing by nature from flagging on ordinary variation;
* more than 5% of the numbers **outside** the reference's ``[min, max]``, or of the
  values **unseen** categories (a model extrapolates, or reads an unknown code);
* any **non-finite** number or unreadable text (a contract violation at any share).

Windows under ``min_rows`` report the shares and thresholds with status
``too_few_rows`` instead of flagging them, as drift does.

>>> missing_threshold(0.016, QualityConfig())
0.116
>>> missing_threshold(0.5, QualityConfig()), missing_threshold(0.8, QualityConfig())
(0.75, 0.9)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from prodml.core import MonitoringConfig
from prodml.core._config import QualityConfig
from prodml.monitoring._drift import DriftReference
from prodml.monitoring._reference import MonitorReference
from prodml.monitoring._result import Result, emit, floats, is_number_type
from prodml.stats import CategoricalProfile
from prodml.storage import feature_ages_in, feature_column, feature_stale_column

__all__ = ["Thresholds", "missing_threshold", "quality_checks"]


@dataclass(frozen=True)
class Thresholds:
    """The quality thresholds of one feature: its ``columns`` override, else the defaults."""

    missing_rate_increase: float
    missing_rate_ratio: float
    out_of_range_rate: float
    unseen_category_rate: float
    non_finite_rate: float

    @classmethod
    def of(cls, config: QualityConfig, column: str) -> Thresholds:
        override = config.columns.get(column)
        names = ("missing_rate_increase", "missing_rate_ratio", "out_of_range_rate",
                 "unseen_category_rate", "non_finite_rate")  # fmt: skip
        values = {n: getattr(config, n) for n in names}
        if override is not None:
            values.update({n: v for n in names if (v := getattr(override, n)) is not None})
        return cls(**values)


def missing_threshold(reference: float | None, config: QualityConfig | Thresholds) -> float:
    """The missing rate above which a window is flagged, given the reference's rate."""
    ref = reference or 0.0
    increase = ref + config.missing_rate_increase
    relative = min(ref * config.missing_rate_ratio, ref + (1 - ref) / 2)
    return round(max(increase, relative), 12)


def quality_checks(
    table: pa.Table, reference: MonitorReference, config: MonitoringConfig | None = None
) -> list[Result]:
    """The module's checks over one window's records (``config``: the thresholds and
    ``min_rows``; default: the defaults)."""
    config = config or MonitoringConfig()
    out: list[Result] = []
    rows = table.num_rows
    if rows == 0:
        return out
    if "violations" in table.column_names:
        flagged = rows - table["violations"].null_count
        out.append(emit("quality", "violation_rate", flagged / rows))
    absent = [n for n in reference.inputs if feature_column(n) not in table.column_names]
    if absent:
        out.append(emit("quality", "absent_features", float(len(absent)), status="error",
                        details={"features": absent}))  # fmt: skip
    out += _freshness(table)
    flag = _Flag(rows >= config.min_rows)
    for name in reference.inputs:
        logged = feature_column(name)
        if logged not in table.column_names:
            continue
        limits = Thresholds.of(config.quality, name)
        try:
            out += _column_quality(name, table[logged], reference.drift, rows, limits, flag)
        except Exception as exc:  # one broken column never breaks the others
            out.append(emit("quality", "missing_rate", None, name, status="error",
                            details={"reason": f"{type(exc).__name__}: {exc}"}))  # fmt: skip
    return out


@dataclass(frozen=True)
class _Flag:
    """The status of a share against its threshold: ``breach`` above it, in a window of
    at least ``min_rows`` (else ``too_few_rows``)."""

    enough_rows: bool

    def __call__(self, value: float | None, threshold: float) -> str:
        if not self.enough_rows:
            return "too_few_rows"
        return "breach" if value is not None and value > threshold else "ok"


def _freshness(table: pa.Table) -> list[Result]:
    """Online-feature staleness per feature view, from ``feature_age.<view>`` and
    ``feature_stale.<view>`` (native requests): median and p95 age, stale share."""
    out: list[Result] = []
    for view, name in feature_ages_in(table.column_names).items():
        ages = floats(table[name])
        ages = ages[np.isfinite(ages)]
        if len(ages):
            p50, p95 = np.percentile(ages, [50, 95])
            out.append(emit("quality", "feature_age_p50_s", float(p50), view))
            out.append(emit("quality", "feature_age_p95_s", float(p95), view))
        flags = feature_stale_column(view)
        if flags in table.column_names:
            stale = floats(table[flags])
            known = stale[np.isfinite(stale)]
            if len(known):
                out.append(emit("quality", "stale_rate", float(known.mean()), view))
    return out


def _missing(
    name: str, value: float, ref_missing: int, ref_rows: int, limits: Thresholds, flag: _Flag
) -> Result:
    reference = ref_missing / ref_rows if ref_rows else None
    threshold = missing_threshold(reference, limits)
    return emit("quality", "missing_rate", value, name, threshold, flag(value, threshold),
                {"reference": reference})  # fmt: skip


def _column_quality(
    name: str,
    column: pa.ChunkedArray,
    drift: DriftReference,
    rows: int,
    limits: Thresholds,
    flag: _Flag,
) -> list[Result]:
    out: list[Result] = []
    if name in drift.numeric:
        ref = drift.numeric[name]
        values = floats(column)
        nan = np.isnan(values)
        finite = np.isfinite(values)
        if not is_number_type(column.type):  # e.g. text in a numeric feature
            unreadable = (len(column) - column.null_count - int((~nan).sum())) / rows
            out.append(emit("quality", "format_error_rate", unreadable, name, 0.0,
                            "breach" if unreadable > 0 else "ok"))  # fmt: skip
        out.append(_missing(name, float(nan.mean()), ref.missing, ref.rows, limits, flag))
        infinite = int((~finite & ~nan).sum()) / rows
        out.append(emit("quality", "non_finite_rate", infinite, name, limits.non_finite_rate,
                        "breach" if infinite > limits.non_finite_rate else "ok"))  # fmt: skip
        if ref.n and finite.any():
            x = values[finite]
            outside = int(((x < ref.min) | (x > ref.max)).sum()) / rows
            out.append(emit("quality", "out_of_range_rate", outside, name,
                            limits.out_of_range_rate, flag(outside, limits.out_of_range_rate),
                            {"min": ref.min, "max": ref.max}))  # fmt: skip
    elif name in drift.categorical:
        ref_c = drift.categorical[name]
        profile = CategoricalProfile.fit(column)
        out.append(_missing(name, profile.missing / rows, ref_c.missing, ref_c.rows, limits, flag))
        known = set(ref_c.categories)
        unseen = {
            c: n for c, n in zip(profile.categories, profile.counts, strict=True) if c not in known
        }
        top = dict(sorted(unseen.items(), key=lambda kv: -kv[1])[:10])
        share = sum(unseen.values()) / rows
        out.append(emit("quality", "unseen_category_rate", share, name,
                        limits.unseen_category_rate, flag(share, limits.unseen_category_rate),
                        {"top": top} if top else None))  # fmt: skip
    return out
