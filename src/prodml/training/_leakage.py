"""The leakage check: how well each feature alone predicts the label, on the training
split and on the held-out test split (the latest rows).

A feature that is the label in disguise — typically an aggregate whose row at an event's
own timestamp already includes that event, read through the inclusive ``event_time <= t``
bound — scores very high alone, or far higher in training than on later data. The check
reports every feature's figures and flags a feature as a suspected leak when

- its single-feature figure on the training split is at least ``leakage_max_auc``
  (classification, default 0.95) or ``leakage_max_r2`` (regression, default 0.90), or
- it is at least ``leakage_max_gap`` (default 0.10) higher on the training split than on
  the test split.

Why these defaults: on tabular problems one honest feature rarely ranks a random positive
above a random negative 95 % of the time (a whole model on the flights data reaches about
0.75), and one feature's linear fit rarely explains 90 % of a target's variance; a feature
that does is either the label leaking in or makes a model unnecessary — worth a look in
both cases. A gap of 0.10 is over three standard errors of an AUC on a few hundred rows of
each class, so sampling noise alone seldom reaches it, while a feature fitted to the
training period (or leaking only there) does. Suspects are warnings unless
``[gate] fail_on_leakage = true``.

The figures, feature by feature:

- **numeric** (numbers, booleans, times, durations) — the values themselves: ROC-AUC as
  ``max(auc, 1 - auc)`` on the training split, the test split's AUC in the direction
  chosen on the training split; for regression, R² of the least-squares line fitted on the
  training split (on the test split: that line's R²). Rows without a finite value are left
  out, so a rank-based figure needs no imputation.
- **categorical** (anything else, missing as a category of its own) — the per-category
  mean label (target encoding). On the training split each row gets the mean of the
  *other* folds (5-fold, out-of-fold), so that a category seen once — an id — cannot
  score by memorising its own label; on the test split each row gets the training split's
  mean of its category (the overall mean for a category not seen in training).

Given the training set's per-view coverage, the report also holds each feature view's
exact-time ties — training rows that read a feature row stamped exactly at their own time
— and flags a view where they reach ``leakage_max_exact_time_share`` (``_exact_time``
says why): the trap at its source, caught even when the leak is too mild for the
single-feature figures.

Splits larger than ``max_rows`` are sampled (seeded): an AUC on 200,000 rows is exact to
about 0.002, and the check then costs a fraction of a second per feature.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> y = rng.random(2000) < 0.3
>>> X = pd.DataFrame({"noise": rng.normal(size=2000), "copy": y.astype(float)})
>>> report = check_leakage(X[:1500], y[:1500], X[1500:], y[1500:], task="classification")
>>> report.suspects, round(report.features["copy"].train, 3)
(['copy'], 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import rankdata

from prodml.core import GateConfig
from prodml.core.errors import ConfigError, SchemaError
from prodml.features import ViewCoverage
from prodml.training._exact_time import ViewExactTime, check_exact_time

__all__ = ["FeatureLeakage", "LeakageReport", "check_leakage"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]
Kind = Literal["numeric", "categorical"]
Metric = Literal["roc_auc", "r2"]

#: Folds of the out-of-fold target encoding of categorical features on the training split.
FOLDS = 5
#: Rows per split above which the check samples (seeded).
MAX_ROWS = 200_000


@dataclass(frozen=True)
class FeatureLeakage:
    """One feature's single-feature figures; ``reasons`` is empty unless it is suspect."""

    kind: Kind
    train: float
    test: float
    rows_train: int
    rows_test: int
    reasons: tuple[str, ...] = ()

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "train": _json(self.train),
            "test": _json(self.test),
            "rows_train": self.rows_train,
            "rows_test": self.rows_test,
            "suspect": self.suspect,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class LeakageReport:
    """Every checked feature's figures, the thresholds used, the skipped columns, and
    each feature view's exact-time ties (empty when the training set's coverage is
    unknown)."""

    metric: Metric
    max_value: float
    max_gap: float
    features: dict[str, FeatureLeakage]
    skipped: dict[str, str] = field(default_factory=dict)
    views: dict[str, ViewExactTime] = field(default_factory=dict)
    max_exact_time_share: float = GateConfig().leakage_max_exact_time_share

    @property
    def suspects(self) -> list[str]:
        """Names of the features suspected of leaking the label, in column order."""
        return [name for name, figures in self.features.items() if figures.suspect]

    @property
    def suspect_views(self) -> list[str]:
        """Names of the feature views suspected of leaking through exact-time ties."""
        return [name for name, finding in self.views.items() if finding.suspect]

    @property
    def findings(self) -> int:
        """Suspect features and suspect views together."""
        return len(self.suspects) + len(self.suspect_views)

    @property
    def warnings(self) -> list[str]:
        """One line per suspect feature or view, saying what was seen and what to look at."""
        features = [
            f"leakage: feature {name!r} is suspected of leaking the label: "
            f"{'; '.join(figures.reasons)}. Check how it is computed and its point-in-time "
            "bound: a view whose row at an event's own time includes that event needs "
            "inclusive=False"
            for name, figures in self.features.items()
            if figures.suspect
        ]
        views = [finding.warning(name) for name, finding in self.views.items() if finding.suspect]
        return features + views

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN figures become ``None``)."""
        return {
            "metric": self.metric,
            "max_value": self.max_value,
            "max_gap": self.max_gap,
            "max_exact_time_share": self.max_exact_time_share,
            "suspects": self.suspects,
            "suspect_views": self.suspect_views,
            "features": {name: figures.to_dict() for name, figures in self.features.items()},
            "skipped": dict(self.skipped),
            "views": {name: finding.to_dict() for name, finding in self.views.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeakageReport:
        """Rebuild a report from :meth:`to_dict` output (one stored before the view
        findings existed loads with none)."""
        try:
            metric = data["metric"]
            if metric not in get_args(Metric):
                raise SchemaError(f"leakage report: metric must be one of {get_args(Metric)}")
            return cls(
                metric=metric,
                max_value=float(data["max_value"]),
                max_gap=float(data["max_gap"]),
                features={
                    str(name): FeatureLeakage(
                        kind=f["kind"],
                        train=_float(f["train"]),
                        test=_float(f["test"]),
                        rows_train=int(f["rows_train"]),
                        rows_test=int(f["rows_test"]),
                        reasons=tuple(str(r) for r in f["reasons"]),
                    )
                    for name, f in data["features"].items()
                },
                skipped={str(k): str(v) for k, v in data.get("skipped", {}).items()},
                views={
                    str(name): ViewExactTime.from_dict(v)
                    for name, v in data.get("views", {}).items()
                },
                max_exact_time_share=float(
                    data.get("max_exact_time_share", GateConfig().leakage_max_exact_time_share)
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"leakage report: missing or malformed field {exc}") from None


def check_leakage(
    X_train: pd.DataFrame,
    y_train: Any,
    X_test: pd.DataFrame,
    y_test: Any,
    *,
    task: Literal["classification", "regression"],
    config: GateConfig | None = None,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    views: Mapping[str, ViewCoverage] | None = None,
) -> LeakageReport:
    """Single-feature figures of every column of ``X_train`` (see the module docstring),
    judged against ``config``'s ``leakage_*`` thresholds (default: ``GateConfig()``),
    and the exact-time ties of the training set's ``views`` (its coverage), if given."""
    if task not in ("classification", "regression"):
        raise ConfigError(f"check_leakage: task must be classification or regression, got {task!r}")
    if max_rows < 1:
        raise ConfigError(f"check_leakage: max_rows must be >= 1, got {max_rows}")
    config = config or GateConfig()
    missing = [c for c in X_train.columns if c not in X_test.columns]
    if missing:
        raise SchemaError(f"check_leakage: test split lacks feature column(s) {missing}")
    rng = np.random.default_rng(seed)
    X_train, yt = _sampled(X_train, _labels(y_train, task, "y_train"), max_rows, rng)
    X_test, ye = _sampled(X_test, _labels(y_test, task, "y_test"), max_rows, rng)
    folds = rng.permutation(len(yt)) % FOLDS
    classification = task == "classification"
    limit = config.leakage_max_auc if classification else config.leakage_max_r2
    metric: Metric = "roc_auc" if classification else "r2"
    features: dict[str, FeatureLeakage] = {}
    skipped: dict[str, str] = {}
    for column in X_train.columns:
        name = str(column)
        a, b = X_train[column], X_test[column]
        x, x_test = _numeric(a), _numeric(b)
        if x is not None and x_test is not None:
            figures = _numeric_figures(x, yt, x_test, ye, classification)
        else:
            codes = _codes(a, b)
            if codes is None:
                skipped[name] = f"values of type {a.dtype} are not hashable categories"
                continue
            figures = _categorical_figures(*codes, yt, ye, folds, classification)
        reasons = _reasons(metric, figures.train, figures.test, limit, config.leakage_max_gap)
        features[name] = replace(figures, reasons=reasons)
    return LeakageReport(
        metric,
        limit,
        config.leakage_max_gap,
        features,
        skipped,
        check_exact_time(views or {}, config),
        config.leakage_max_exact_time_share,
    )


def _reasons(metric: str, train: float, test: float, limit: float, gap: float) -> tuple[str, ...]:
    out = []
    if train >= limit:
        out.append(f"{metric} {train:.3f} on the training split alone >= {limit:g}")
    if train - test >= gap:
        out.append(
            f"{metric} {train:.3f} on the training split vs {test:.3f} on the test split "
            f"({train - test:.3f} higher, >= {gap:g})"
        )
    return tuple(out)


def _labels(y: Any, task: str, what: str) -> Floats:
    values = np.asarray(y)
    if values.ndim != 1:
        raise SchemaError(
            f"check_leakage: {what} must be one-dimensional, got shape {values.shape}"
        )
    try:
        out = values.astype(np.float64)
    except (TypeError, ValueError):
        raise SchemaError(f"check_leakage: {what} must be numeric or boolean") from None
    if task == "classification" and not np.isin(out, (0.0, 1.0)).all():
        raise SchemaError(f"check_leakage: {what} must be binary (0/1 or bool) for classification")
    return out


def _sampled(
    X: pd.DataFrame, y: Floats, max_rows: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, Floats]:
    if len(X) != len(y):
        raise SchemaError(f"check_leakage: {len(X)} feature rows but {len(y)} labels")
    if len(y) <= max_rows:
        return X.reset_index(drop=True), y
    keep = np.sort(rng.choice(len(y), max_rows, replace=False))
    return X.iloc[keep].reset_index(drop=True), y[keep]


def _numeric(values: pd.Series[Any]) -> Floats | None:
    """Values as floats (NaN where missing or not finite), None for a categorical column."""
    kind = values.dtype
    if isinstance(kind, pd.CategoricalDtype):
        return None
    if pd.api.types.is_datetime64_any_dtype(kind):
        out = (values - pd.Timestamp(0, tz=getattr(kind, "tz", None))).dt.total_seconds()
        return _finite(out.to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_timedelta64_dtype(kind):
        return _finite(values.dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan))
    if pd.api.types.is_bool_dtype(kind) or (
        pd.api.types.is_numeric_dtype(kind) and not pd.api.types.is_complex_dtype(kind)
    ):
        return _finite(values.to_numpy(dtype=np.float64, na_value=np.nan))
    return None


def _finite(values: npt.NDArray[Any]) -> Floats:
    """A float64 copy with infinities as NaN (the input may be a view of the caller's frame)."""
    x = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(x), x, np.nan)


def _numeric_figures(
    x: Floats, y: Floats, x_test: Floats, y_test: Floats, classification: bool
) -> FeatureLeakage:
    has, has_test = ~np.isnan(x), ~np.isnan(x_test)
    x, y, x_test, y_test = x[has], y[has], x_test[has_test], y_test[has_test]
    if classification:
        train, test = _oriented(_auc(y, x), _auc(y_test, x_test))
    elif len(y) == 0:
        train, test = math.nan, math.nan
    else:
        spread = x - x.mean()
        var = float(spread @ spread)
        slope = float(spread @ (y - y.mean())) / var if var > 0 else 0.0
        intercept = float(y.mean()) - slope * float(x.mean())
        train, test = _r2(y, intercept + slope * x), _r2(y_test, intercept + slope * x_test)
    return FeatureLeakage("numeric", train, test, len(y), len(y_test))


def _oriented(train: float, test: float) -> tuple[float, float]:
    """``max(auc, 1 - auc)`` on the training split, the test AUC in the same direction."""
    return (1.0 - train, 1.0 - test) if train < 0.5 else (train, test)


def _codes(train: pd.Series[Any], test: pd.Series[Any]) -> tuple[Ints, Ints, int] | None:
    """Category codes shared by both splits; missing values form the last category."""
    both = pd.concat([train.astype(object), test.astype(object)], ignore_index=True)
    try:
        codes, uniques = pd.factorize(both, use_na_sentinel=True)
    except TypeError:
        return None
    codes = codes.astype(np.intp)
    codes[codes < 0] = len(uniques)
    return codes[: len(train)], codes[len(train) :], len(uniques) + 1


def _categorical_figures(
    codes: Ints,
    codes_test: Ints,
    categories: int,
    y: Floats,
    y_test: Floats,
    folds: Ints,
    classification: bool,
) -> FeatureLeakage:
    """Out-of-fold target encoding on the training split, the training split's per-category
    means on the test split."""
    n = len(y)
    if n == 0:
        return FeatureLeakage("categorical", math.nan, math.nan, 0, len(y_test))
    cell = folds * categories + codes
    count_fc = np.bincount(cell, minlength=FOLDS * categories).reshape(FOLDS, categories)
    sum_fc = np.bincount(cell, weights=y, minlength=FOLDS * categories).reshape(FOLDS, categories)
    count_c, sum_c = count_fc.sum(axis=0), sum_fc.sum(axis=0)
    count_f, sum_f = count_fc.sum(axis=1), sum_fc.sum(axis=1)
    other_count = count_c[codes] - count_fc[folds, codes]
    other_sum = sum_c[codes] - sum_fc[folds, codes]
    other_rows = count_f.sum() - count_f[folds]
    prior = np.divide(
        sum_f.sum() - sum_f[folds],
        other_rows,
        out=np.full(n, y.mean()),
        where=other_rows > 0,
    )
    encoded = np.divide(other_sum, other_count, out=prior.copy(), where=other_count > 0)
    seen = count_c[codes_test] > 0
    encoded_test = np.full(len(y_test), y.mean())
    encoded_test[seen] = sum_c[codes_test[seen]] / count_c[codes_test[seen]]
    if classification:
        train, test = _oriented(_auc(y, encoded), _auc(y_test, encoded_test))
    else:
        train, test = _r2(y, encoded), _r2(y_test, encoded_test)
    return FeatureLeakage("categorical", train, test, n, len(y_test))


def _auc(y: Floats, score: Floats) -> float:
    """ROC-AUC by the rank-sum (Mann–Whitney) formula, ties at half; NaN with one class."""
    positives = float(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(score)
    return float((ranks @ y - positives * (positives + 1) / 2) / (positives * negatives))


def _r2(y: Floats, prediction: Floats) -> float:
    """``1 - SSE / SST`` about the split's own mean; NaN for a constant or empty target."""
    if len(y) == 0:
        return math.nan
    spread = y - y.mean()
    total = float(spread @ spread)
    if total == 0:
        return math.nan
    error = y - prediction
    return 1.0 - float(error @ error) / total


def _json(x: float) -> float | None:
    return None if math.isnan(x) else x


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)
