"""Model performance over one monitoring window: realized metrics once labels arrive,
calibration, and estimated metrics before they do.

* :func:`classification_metrics` and :func:`regression_metrics` score a window of labels
  against predictions with the metrics of :mod:`prodml.stats` (the ones training
  reports, with its conventions): a metric undefined on the window (ROC-AUC with one
  class, R² under two rows, anything of an empty window) is ``None``, never a warning.
* :func:`calibration` measures how far scores are from probabilities (ECE and the
  reliability table of :mod:`prodml.stats`); a :class:`Calibrator` fitted on reference
  labels repairs them.
* :func:`estimate_classification` estimates accuracy, precision, recall, F1 and ROC-AUC
  from calibrated probabilities alone (confidence-based performance estimation, CBPE):
  each unknown label is Bernoulli(p), so the expected confusion matrix and the expected
  ROC curve give point estimates, and simulated label draws give their intervals.

Rows where a label or a score is NaN are dropped and counted (``dropped``). The
estimates score every simulated label draw, vectorised, with the rank formula of ROC-AUC
(ties at their average rank), which equals the area under the realized ROC curve.

>>> y = np.array([0, 0, 1, 1, 1])
>>> s = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
>>> m = classification_metrics(y, s)
>>> round(m["roc_auc"], 4), m["accuracy"], m["precision"], m["rows"]
(0.8333, 0.6, 0.6666666666666666, 5)
>>> est = estimate_classification(np.array([0.9, 0.8, 0.7, 0.2, 0.1]))
>>> round(est["accuracy"].value, 4), round(est["precision"].value, 4)
(0.82, 0.8)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.isotonic import IsotonicRegression

from prodml import stats
from prodml.core._monitor_metrics import (
    CLASSIFICATION_METRICS,
    ESTIMATED_METRICS,
    REGRESSION_METRICS,
)
from prodml.core.errors import SchemaError, StateError

__all__ = [
    "Calibration",
    "Calibrator",
    "Estimate",
    "ReliabilityBin",
    "calibration",
    "classification_metrics",
    "estimate_classification",
    "regression_metrics",
]

Floats = NDArray[np.float64]

#: Reference rows below which a :class:`Calibrator` stays the identity.
MIN_CALIBRATION_ROWS = 20

#: Simulated labels held in memory at once by :func:`estimate_classification` (as float64:
#: 32 MiB); the simulations are drawn in chunks of ``max(1, this // rows)``.
_CHUNK_ELEMENTS = 1 << 22

#: Keys of :func:`classification_metrics` and :func:`estimate_classification`: the names
#: of the monitoring metric catalogue, so alert rules and these functions agree.
_CLASSIFICATION_KEYS = CLASSIFICATION_METRICS
_ESTIMATED = ESTIMATED_METRICS


# -- input checks ---------------------------------------------------------------------


def _column(values: ArrayLike, name: str) -> Floats:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{name} must be numeric or boolean: {exc}") from exc
    if array.ndim != 1:
        raise SchemaError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def _paired(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> tuple[Floats, Floats, int]:
    """Both columns as float64 with the rows where either is NaN dropped, and how many."""
    x, y = _column(a, names[0]), _column(b, names[1])
    if x.shape != y.shape:
        raise SchemaError(
            f"{names[0]} and {names[1]} must have one length, got {x.size} and {y.size}"
        )
    keep = ~(np.isnan(x) | np.isnan(y))
    dropped = int(x.size - np.count_nonzero(keep))
    if dropped:
        x, y = x[keep], y[keep]
    return x, y, dropped


def _check_labels(y: Floats, name: str) -> None:
    if not np.all((y == 0) | (y == 1)):
        bad = y[(y != 0) & (y != 1)][:3].tolist()
        raise SchemaError(f"{name} must be binary labels 0/1 (or bool), got values {bad}")


def _check_probabilities(p: Floats, name: str) -> None:
    if not np.all((p >= 0) & (p <= 1)):
        bad = p[~((p >= 0) & (p <= 1))][:3].tolist()
        raise SchemaError(f"{name} must be probabilities in [0, 1], got values {bad}")


def _binary_window(
    y_true: ArrayLike, scores: ArrayLike, score_name: str = "scores"
) -> tuple[Floats, Floats, int]:
    y, s, dropped = _paired(y_true, scores, ("y_true", score_name))
    _check_labels(y, "y_true")
    _check_probabilities(s, score_name)
    return y, s, dropped


def _count(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise SchemaError(f"{name} must be an int >= {minimum}, got {value!r}")


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


# -- ranks and ROC-AUC ----------------------------------------------------------------


def _tie_groups(scores: Floats) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """The ascending sort order of ``scores`` and the start and size of each run of equal
    scores in it."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
    sizes = np.diff(np.append(starts, scores.size))
    return order, starts, sizes


def _average_ranks(
    order: NDArray[np.intp], starts: NDArray[np.intp], sizes: NDArray[np.intp]
) -> Floats:
    """1-based ranks with ties given the mean of their ranks (SciPy's ``rankdata``)."""
    ranks = np.empty(order.size, dtype=np.float64)
    ranks[order] = np.repeat(starts + (sizes + 1) / 2, sizes)
    return ranks


# -- realized metrics -----------------------------------------------------------------


def classification_metrics(
    y_true: ArrayLike, scores: ArrayLike, *, threshold: float = 0.5
) -> dict[str, float | None]:
    """Binary classification metrics of one window: ``scores`` are P(class 1) and a row
    is predicted positive when its score is ``>= threshold``.

    ``positive_rate`` is the share predicted positive, ``label_rate`` the share of
    positive labels; precision, recall and F1 are 0.0 where their denominator is (see
    :mod:`prodml.stats` for every convention). ``rows`` counts the rows scored and
    ``dropped`` those with a NaN label or score.

    >>> m = classification_metrics([1, 1, 1], [0.9, 0.4, float("nan")])
    >>> m["roc_auc"], m["recall"], m["rows"], m["dropped"]
    (None, 0.5, 2, 1)
    >>> classification_metrics([], [])["accuracy"] is None
    True
    """
    y, s, dropped = _binary_window(y_true, scores)
    metrics = stats.classification_metrics(y, s, threshold=threshold)
    names = {"positive_rate": "predicted_positive_rate"}
    result = {name: metrics[names.get(name, name)] for name in _CLASSIFICATION_KEYS}
    return result | {"rows": y.size, "dropped": dropped}


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float | None]:
    """RMSE, MAE, R² and bias (mean of ``y_pred - y_true``) of one window.

    R² is None under two rows; ``dropped`` counts rows with a NaN on either side.

    >>> regression_metrics([1.0, 2.0, 3.0], [1.5, 2.0, 3.5])
    {'rmse': 0.408248290463863, 'mae': 0.3333333333333333, 'r2': 0.75, 'bias': 0.3333333333333333, 'rows': 3, 'dropped': 0}
    """
    y, f, dropped = _paired(y_true, y_pred, ("y_true", "y_pred"))
    for name, values in (("y_true", y), ("y_pred", f)):
        if not np.all(np.isfinite(values)):
            raise SchemaError(f"{name} must be finite or NaN, got an infinite value")
    metrics = stats.regression_metrics(y, f)
    return {name: metrics[name] for name in REGRESSION_METRICS} | {
        "rows": y.size,
        "dropped": dropped,
    }


# -- calibration ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReliabilityBin:
    """One row of a reliability table: scores in ``[lower, upper)`` (the last bin also
    holds 1.0), their mean and the share of positive labels (None when empty)."""

    lower: float
    upper: float
    count: int
    mean_score: float | None
    label_rate: float | None


@dataclass(frozen=True)
class Calibration:
    """Calibration of one window: ``ece`` is the count-weighted mean of
    ``|mean_score - label_rate|`` over the bins, ``max_error`` its largest value (both
    None on an empty window)."""

    ece: float | None
    max_error: float | None
    rows: int
    dropped: int
    table: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the table as a list of dicts."""
        return asdict(self) | {"table": [asdict(b) for b in self.table]}


def calibration(y_true: ArrayLike, scores: ArrayLike, *, bins: int = 10) -> Calibration:
    """Reliability table and expected calibration error on ``bins`` equal-width bins of
    [0, 1].

    >>> c = calibration([0, 1, 1, 1], [0.2, 0.3, 0.8, 0.9], bins=2)
    >>> round(c.ece, 4), round(c.max_error, 4), [b.count for b in c.table]
    (0.2, 0.25, [2, 2])
    """
    _count(bins, "calibration: bins", 1)
    y, s, dropped = _binary_window(y_true, scores)
    curve = stats.reliability_curve(y, s, bins=bins)
    edges = curve["bin_edges"]
    table = tuple(
        ReliabilityBin(edges[b], edges[b + 1], count, mean_score, label_rate)
        for b, (count, mean_score, label_rate) in enumerate(
            zip(curve["count"], curve["mean_predicted"], curve["fraction_positive"], strict=True)
        )
    )
    if y.size == 0:
        return Calibration(None, None, 0, dropped, table)
    ece = stats.expected_calibration_error(y, s, bins=bins)
    worst = max(
        abs(b.mean_score - b.label_rate)
        for b in table
        if b.mean_score is not None and b.label_rate is not None
    )
    return Calibration(ece, worst, int(y.size), dropped, table)


class Calibrator:
    """Isotonic calibration of scores, fitted on reference scores and labels.

    The fitted map is kept as its thresholds and applied by linear interpolation,
    constant beyond the end thresholds, so a calibrator loaded with :meth:`from_dict`
    needs no scikit-learn. Under ``min_rows`` reference rows, or with one class only, the
    fitted map is the identity (scores clipped to [0, 1]).

    >>> cal = Calibrator().fit([0.1, 0.2, 0.3], [0, 1, 0])
    >>> cal.identity_, cal.apply([0.25, 1.5]).tolist()
    (True, [0.25, 1.0])
    >>> s = np.linspace(0, 1, 40)
    >>> cal = Calibrator().fit(s, s > 0.5)
    >>> cal.identity_, cal.apply([0.2, 0.9]).tolist()
    (False, [0.0, 1.0])
    >>> Calibrator.from_dict(cal.to_dict()).apply([0.2, 0.9]).tolist()
    [0.0, 1.0]
    """

    x_: Floats
    y_: Floats
    identity_: bool

    def __init__(self, min_rows: int = MIN_CALIBRATION_ROWS) -> None:
        self.min_rows = min_rows

    def fit(self, scores: ArrayLike, labels: ArrayLike) -> Calibrator:
        """Learn the map from ``scores`` to P(label 1); NaN rows are ignored."""
        _count(self.min_rows, "Calibrator.min_rows", 0)
        y, s, _ = _binary_window(labels, scores)
        if y.size < max(self.min_rows, 1) or np.all(y == y[0]):
            self.x_, self.y_, self.identity_ = np.array([0.0, 1.0]), np.array([0.0, 1.0]), True
            return self
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        isotonic.fit(s, y)
        self.x_ = np.asarray(isotonic.X_thresholds_, dtype=np.float64)
        self.y_ = np.asarray(isotonic.y_thresholds_, dtype=np.float64)
        self.identity_ = False
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "x_"):
            raise StateError("Calibrator is not fitted: call fit() or from_dict() first")

    def apply(self, scores: ArrayLike) -> Floats:
        """Calibrated probabilities of ``scores`` (NaN stays NaN)."""
        self._fitted()
        return np.interp(_column(scores, "scores"), self.x_, self.y_)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the thresholds as lists of floats."""
        self._fitted()
        return {
            "min_rows": self.min_rows,
            "identity": self.identity_,
            "x": self.x_.tolist(),
            "y": self.y_.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """A fitted calibrator from :meth:`to_dict` output."""
        missing = sorted({"min_rows", "identity", "x", "y"} - set(data))
        if missing:
            raise SchemaError(f"calibrator dict lacks keys {missing}")
        x, y = _column(data["x"], "calibrator x"), _column(data["y"], "calibrator y")
        if x.size == 0 or x.shape != y.shape:
            raise SchemaError(
                f"calibrator x and y must be non-empty and of one length, got {x.size} and {y.size}"
            )
        if not (np.all(np.isfinite(x)) and np.all(np.diff(x) > 0)):
            raise SchemaError("calibrator x must be finite and strictly increasing")
        _check_probabilities(y, "calibrator y")
        if np.any(np.diff(y) < 0):
            raise SchemaError("calibrator y must be non-decreasing")
        calibrator = cls(min_rows=int(data["min_rows"]))
        calibrator.x_, calibrator.y_, calibrator.identity_ = x, y, bool(data["identity"])
        return calibrator

    def __repr__(self) -> str:
        state = "unfitted" if not hasattr(self, "x_") else f"{self.x_.size} thresholds"
        return f"Calibrator(min_rows={self.min_rows}, {state})"


# -- estimation without labels --------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """An estimated metric and the central interval of its value over simulated labels
    (all None when the metric is undefined on the window)."""

    value: float | None
    lower: float | None
    upper: float | None

    def to_dict(self) -> dict[str, float | None]:
        """JSON-able form."""
        return asdict(self)


def _expected_auc(
    p: Floats, order: NDArray[np.intp], starts: NDArray[np.intp], positives: float
) -> float | None:
    """Area under the expected ROC curve: rows sorted by score, each tie group one step,
    TPR and FPR stepping by its expected positives and negatives."""
    ordered = p[order]
    group_pos = np.add.reduceat(ordered, starts)
    group_neg = np.add.reduceat(1 - ordered, starts)
    negatives = float(group_neg.sum())
    if positives <= 0 or negatives <= 0:
        return None
    above = positives - np.cumsum(group_pos)
    return float(group_neg @ (above + group_pos / 2)) / (positives * negatives)


def _simulated_counts(
    p: Floats, weights: Floats, simulations: int, seed: int | None
) -> NDArray[np.float64]:
    """``weights @ y`` for ``simulations`` label vectors ``y ~ Bernoulli(p)``, drawn in
    chunks of rows; the draws are the same whatever the chunk size."""
    n = p.size
    rows = max(1, _CHUNK_ELEMENTS // n)
    rng = np.random.default_rng(seed)
    buffer = np.empty((min(rows, simulations), n), dtype=np.float64)
    out = np.empty((weights.shape[0], simulations), dtype=np.float64)
    for start in range(0, simulations, rows):
        draw = buffer[: min(rows, simulations - start)]
        rng.random(out=draw)
        np.less(draw, p, out=draw, casting="unsafe")
        out[:, start : start + draw.shape[0]] = weights @ draw.T
    return out


def _interval(values: Floats, level: float) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    lower, upper = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(lower), float(upper)


def estimate_classification(
    probabilities: ArrayLike,
    *,
    scores: ArrayLike | None = None,
    threshold: float = 0.5,
    simulations: int = 200,
    level: float = 0.95,
    seed: int | None = 0,
) -> dict[str, Estimate]:
    """Estimated ``accuracy``, ``precision``, ``recall``, ``f1`` and ``roc_auc`` of a
    window without labels, from calibrated probabilities of class 1.

    Point estimates come from the expected confusion matrix at ``threshold`` (a row is
    predicted positive when its probability is ``>= threshold``) and the expected ROC
    curve; ``[lower, upper]`` is the central ``level`` interval of each realized metric
    over ``simulations`` label vectors drawn from Bernoulli(p) (None when
    ``simulations`` is 0). NaN probabilities are dropped.

    ``scores`` (the model's own outputs, same length) decide and rank instead of the
    probabilities: a row is predicted positive when its score is ``>= threshold``, and
    ROC-AUC ranks by score — so the estimate is of the metrics computed from the scores
    once labels arrive, while a calibration map that merges scores into ties (isotonic
    steps) changes neither.

    >>> est = estimate_classification([0.9, 0.9, 0.1, 0.1])
    >>> est["precision"].value, est["recall"].value, round(est["roc_auc"].value, 4)
    (0.9, 0.9, 0.9)
    >>> est["roc_auc"].lower <= est["roc_auc"].upper
    True
    >>> estimate_classification([])["f1"]
    Estimate(value=None, lower=None, upper=None)
    """
    _count(simulations, "estimate_classification: simulations", 0)
    if not 0 < level < 1:
        raise SchemaError(f"estimate_classification: level must be in (0, 1), got {level!r}")
    p = _column(probabilities, "probabilities")
    ranking = p if scores is None else _column(scores, "scores")
    if ranking.shape != p.shape:
        raise SchemaError(
            f"estimate_classification: {ranking.size} scores for {p.size} probabilities; "
            "expected one score per row"
        )
    keep = ~(np.isnan(p) | np.isnan(ranking))
    p, ranking = p[keep], ranking[keep]
    _check_probabilities(p, "probabilities")
    n = p.size
    if n == 0:
        return dict.fromkeys(_ESTIMATED, Estimate(None, None, None))
    predicted = ranking >= threshold
    k = int(np.count_nonzero(predicted))
    positives = float(p.sum())
    tp = float(p[predicted].sum())
    tn = float(np.sum(1 - p[~predicted]))
    order, starts, sizes = _tie_groups(ranking)
    value: dict[str, float | None] = {
        "accuracy": (tp + tn) / n,
        "precision": _ratio(tp, k),
        "recall": _ratio(tp, positives),
        "f1": _ratio(2 * tp, k + positives),
        "roc_auc": _expected_auc(p, order, starts, positives),
    }
    if simulations == 0:
        return {name: Estimate(value[name], None, None) for name in _ESTIMATED}
    ranks = _average_ranks(order, starts, sizes)
    weights = np.stack([ranks, predicted.astype(np.float64), np.ones(n)])
    rank_sum, sim_tp, sim_pos = _simulated_counts(p, weights, simulations, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        realized = {
            "accuracy": (2 * sim_tp + n - k - sim_pos) / n,
            "precision": sim_tp / k,
            "recall": sim_tp / sim_pos,
            "f1": 2 * sim_tp / (k + sim_pos),
            "roc_auc": (rank_sum - sim_pos * (sim_pos + 1) / 2) / (sim_pos * (n - sim_pos)),
        }
    return {
        name: Estimate(value[name], *_interval(realized[name], level))
        if value[name] is not None
        else Estimate(None, None, None)
        for name in _ESTIMATED
    }
