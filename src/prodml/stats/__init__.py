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

from typing import TYPE_CHECKING

from prodml.core._lazy import lazy_attributes
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
from prodml.stats._numeric_drift import (
    DEFAULT_RESOLUTION,
    NumericProfile,
    as_float_array,
    binned,
    ks,
    wasserstein,
)
from prodml.stats._sketches import DistinctCount, FrequentItems, Histogram, QuantileSketch

if TYPE_CHECKING:
    from prodml.stats._ab_tests import (
        SRM_THRESHOLD,
        Alternative,
        SampleRatioCheck,
        TwoSampleTest,
        normal_test,
        sample_ratio_mismatch,
        two_proportion_ztest,
        welch_ttest,
        welch_ttest_from_stats,
    )
    from prodml.stats._auc import delong_auc, grouped_delong_auc
    from prodml.stats._bayes import (
        BayesComparison,
        beta_binomial,
        normal_means,
        prob_beta_greater,
    )
    from prodml.stats._cuped import (
        CupedResult,
        cuped,
    )
    from prodml.stats._delta_method import (
        RatioEstimate,
        ratio_metric,
        ratio_metric_test,
        relative_lift,
        relative_lift_from_stats,
    )
    from prodml.stats._multiple_testing import (
        AdjustedFamily,
        FamilyMethod,
        adjust_family,
        benjamini_hochberg,
        holm,
    )
    from prodml.stats._noninferiority import (
        NonInferiority,
        noninferiority_means,
        noninferiority_proportions,
    )
    from prodml.stats._paired import (
        PairedComparison,
        PairedMetric,
        delong_test,
        paired_bootstrap,
        paired_differences,
    )
    from prodml.stats._power import (
        PowerAlternative,
        ProportionMethod,
        SampleSize,
        mean_mde,
        mean_power,
        mean_sample_size,
        proportion_mde,
        proportion_power,
        proportion_sample_size,
    )
    from prodml.stats._segments import (
        EffectKind,
        NoveltyEffects,
        SegmentEffects,
        novelty_effects,
        segment_effects,
    )
    from prodml.stats._sequential import (
        Boundaries,
        Crossing,
        MSPRTResult,
        SpendingKind,
        alpha_spent,
        classical_boundaries,
        crossing_probabilities,
        first_crossing,
        mixing_ratio,
        msprt,
        msprt_means,
        msprt_proportions,
        spending_boundaries,
    )
else:
    __getattr__ = lazy_attributes(
        __name__,
        {
            "prodml.stats._auc": ["delong_auc", "grouped_delong_auc"],
            "prodml.stats._power": [
                "PowerAlternative",
                "ProportionMethod",
                "SampleSize",
                "mean_mde",
                "mean_power",
                "mean_sample_size",
                "proportion_mde",
                "proportion_power",
                "proportion_sample_size",
            ],
            "prodml.stats._ab_tests": [
                "SRM_THRESHOLD",
                "Alternative",
                "SampleRatioCheck",
                "TwoSampleTest",
                "normal_test",
                "sample_ratio_mismatch",
                "two_proportion_ztest",
                "welch_ttest",
                "welch_ttest_from_stats",
            ],
            "prodml.stats._delta_method": [
                "RatioEstimate",
                "ratio_metric",
                "ratio_metric_test",
                "relative_lift",
                "relative_lift_from_stats",
            ],
            "prodml.stats._cuped": [
                "CupedResult",
                "cuped",
            ],
            "prodml.stats._noninferiority": [
                "NonInferiority",
                "noninferiority_means",
                "noninferiority_proportions",
            ],
            "prodml.stats._sequential": [
                "Boundaries",
                "Crossing",
                "MSPRTResult",
                "SpendingKind",
                "alpha_spent",
                "classical_boundaries",
                "crossing_probabilities",
                "first_crossing",
                "mixing_ratio",
                "msprt",
                "msprt_means",
                "msprt_proportions",
                "spending_boundaries",
            ],
            "prodml.stats._bayes": [
                "BayesComparison",
                "beta_binomial",
                "normal_means",
                "prob_beta_greater",
            ],
            "prodml.stats._segments": [
                "EffectKind",
                "NoveltyEffects",
                "SegmentEffects",
                "novelty_effects",
                "segment_effects",
            ],
            "prodml.stats._paired": [
                "PairedComparison",
                "PairedMetric",
                "delong_test",
                "paired_bootstrap",
                "paired_differences",
            ],
            "prodml.stats._multiple_testing": [
                "AdjustedFamily",
                "FamilyMethod",
                "adjust_family",
                "benjamini_hochberg",
                "holm",
            ],
        },
    )

__all__ = [
    "DEFAULT_RESOLUTION",
    "LOG_LOSS_EPS",
    "PRIOR_MEAN_VARIANCE",
    "PRIOR_NOISE_VARIANCE",
    "SRM_THRESHOLD",
    "ZERO_SHARE",
    "AdjustedFamily",
    "Alternative",
    "Assigner",
    "BanditKind",
    "BanditState",
    "BayesComparison",
    "BetaArm",
    "Boundaries",
    "CategoricalProfile",
    "Crossing",
    "CupedResult",
    "Decision",
    "DistinctCount",
    "EffectKind",
    "FamilyMethod",
    "FrequentItems",
    "GaussianArm",
    "Histogram",
    "MSPRTResult",
    "NonInferiority",
    "NoveltyEffects",
    "NumericProfile",
    "PairedComparison",
    "PairedMetric",
    "PowerAlternative",
    "ProportionMethod",
    "QuantileSketch",
    "RatioEstimate",
    "SampleRatioCheck",
    "SampleSize",
    "SegmentEffects",
    "SpendingKind",
    "TwoSampleTest",
    "adjust_family",
    "aligned",
    "alpha_spent",
    "as_float_array",
    "assign",
    "assign_many",
    "benjamini_hochberg",
    "beta_binomial",
    "binary_inputs",
    "binned",
    "brier",
    "calibration_bins",
    "check_bins",
    "check_threshold",
    "chi_square",
    "choose",
    "classical_boundaries",
    "classification_metrics",
    "crossing_probabilities",
    "cuped",
    "delong_auc",
    "delong_test",
    "expected_calibration_error",
    "finite_float",
    "finite_floats",
    "first_crossing",
    "g_test",
    "grouped_classification_metrics",
    "grouped_delong_auc",
    "grouped_regression_metrics",
    "hellinger",
    "holm",
    "jensen_shannon",
    "kl",
    "ks",
    "linf",
    "log_loss",
    "mean_mde",
    "mean_power",
    "mean_sample_size",
    "mixing_ratio",
    "msprt",
    "msprt_means",
    "msprt_proportions",
    "noninferiority_means",
    "noninferiority_proportions",
    "normal_means",
    "normal_test",
    "novelty_effects",
    "paired_bootstrap",
    "paired_differences",
    "prob_beta_greater",
    "probabilities",
    "proportion_mde",
    "proportion_power",
    "proportion_sample_size",
    "psi",
    "ratio_metric",
    "ratio_metric_test",
    "regression_metrics",
    "relative_lift",
    "relative_lift_from_stats",
    "reliability_curve",
    "roc_auc",
    "sample_fraction",
    "sample_ratio_mismatch",
    "segment_effects",
    "shares",
    "smooth",
    "spending_boundaries",
    "two_proportion_ztest",
    "unit_hash",
    "wasserstein",
    "welch_ttest",
    "welch_ttest_from_stats",
]
