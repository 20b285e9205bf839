"""Layer 1, pure statistics (NumPy and SciPy, usable without a project): sticky weighted
assignment of routing units to arms, Thompson-sampling bandit policies with shared,
mergeable state, drift statistics over profiles fitted once, multiple-testing control,
mergeable sketches, and the model metrics (classification, calibration, regression)
that training and monitoring both report.

>>> import numpy as np
>>> assign("user-42", "exp-1", {"champion": 0.9, "challenger": 0.1})
'champion'
>>> state = BanditState.new("bernoulli", ["champion", "challenger"])
>>> state = state.update("challenger", 1)
>>> decision = choose(state, np.random.default_rng(7), burn_in=1)
>>> decision.arm, decision.propensity, decision.explored
('champion', 1.0, True)
>>> BanditState.from_dict(state.to_dict()) == state
True
>>> ref = NumericProfile.fit(np.arange(100.0), bins=4)
>>> round(wasserstein(ref, NumericProfile.fit(np.arange(100.0) + 10), normed=True), 4)
0.3464
>>> round(psi(*binned(ref, NumericProfile.fit(np.arange(100.0) + 10))), 4)
0.0847
"""

from __future__ import annotations

from prodml.stats._assignment import (
    Assigner,
    assign,
    assign_many,
    finite_float,
    sample_fraction,
    unit_hash,
)
from prodml.stats._bandits import (
    PRIOR_MEAN_VARIANCE,
    PRIOR_NOISE_VARIANCE,
    BanditKind,
    BanditState,
    BetaArm,
    Decision,
    GaussianArm,
    choose,
    probabilities,
)
from prodml.stats._categorical_drift import CategoricalProfile, aligned, chi_square, g_test
from prodml.stats._divergences import (
    ZERO_SHARE,
    hellinger,
    jensen_shannon,
    kl,
    linf,
    psi,
    shares,
    smooth,
)
from prodml.stats._metrics import (
    LOG_LOSS_EPS,
    binary_inputs,
    brier,
    calibration_bins,
    check_bins,
    check_threshold,
    classification_metrics,
    expected_calibration_error,
    finite_floats,
    grouped_classification_metrics,
    grouped_regression_metrics,
    log_loss,
    regression_metrics,
    reliability_curve,
    roc_auc,
)
from prodml.stats._multiple_testing import benjamini_hochberg
from prodml.stats._numeric_drift import (
    DEFAULT_RESOLUTION,
    NumericProfile,
    as_float_array,
    binned,
    ks,
    wasserstein,
)
from prodml.stats._sketches import DistinctCount, FrequentItems, Histogram, QuantileSketch

__all__ = [
    "DEFAULT_RESOLUTION",
    "LOG_LOSS_EPS",
    "PRIOR_MEAN_VARIANCE",
    "PRIOR_NOISE_VARIANCE",
    "ZERO_SHARE",
    "Assigner",
    "BanditKind",
    "BanditState",
    "BetaArm",
    "CategoricalProfile",
    "Decision",
    "DistinctCount",
    "FrequentItems",
    "GaussianArm",
    "Histogram",
    "NumericProfile",
    "QuantileSketch",
    "aligned",
    "as_float_array",
    "assign",
    "assign_many",
    "benjamini_hochberg",
    "binary_inputs",
    "binned",
    "brier",
    "calibration_bins",
    "check_bins",
    "check_threshold",
    "chi_square",
    "choose",
    "classification_metrics",
    "expected_calibration_error",
    "finite_float",
    "finite_floats",
    "g_test",
    "grouped_classification_metrics",
    "grouped_regression_metrics",
    "hellinger",
    "jensen_shannon",
    "kl",
    "ks",
    "linf",
    "log_loss",
    "probabilities",
    "psi",
    "regression_metrics",
    "reliability_curve",
    "roc_auc",
    "sample_fraction",
    "shares",
    "smooth",
    "unit_hash",
    "wasserstein",
]
