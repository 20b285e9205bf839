"""ROC-AUC with its DeLong variance, of one model and per group, against the O(m·n)
definition, scikit-learn's AUC and the paired DeLong test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prodml.core.errors import SchemaError
from prodml.stats import delong_test, roc_auc
from prodml.stats._auc import delong_auc, grouped_delong_auc


def brute_force(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """DeLong (1988) by the pairwise kernel ψ(x, y) = 1 if x > y, ½ if equal, 0 else."""
    pos, neg = score[y], score[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = (v10.var(ddof=1) / len(pos) if len(pos) > 1 else 0.0) + (
        v01.var(ddof=1) / len(neg) if len(neg) > 1 else 0.0
    )
    return float(psi.mean()), float(var)


@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])),
        min_size=2,
        max_size=60,
    )
)
def test_delong_auc_equals_the_pairwise_definition_with_ties(
    rows: list[tuple[bool, float]],
) -> None:
    y = np.array([r[0] for r in rows])
    score = np.array([r[1] for r in rows])
    auc, var = delong_auc(y, score)
    if y.all() or not y.any():
        assert np.isnan(auc)
        assert np.isnan(var)
        return
    expected_auc, expected_var = brute_force(y, score)
    assert auc == pytest.approx(expected_auc, abs=1e-12)
    assert var == pytest.approx(expected_var, rel=1e-9, abs=1e-15)
    assert auc == pytest.approx(roc_auc(y, score), abs=1e-12)


def test_one_models_variance_is_the_paired_variance_against_a_constant_model() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(400) < 0.35
    score = np.round(rng.random(400) * 0.6 + 0.4 * y, 2)
    _, var = delong_auc(y, score)
    paired = delong_test(y, np.full(400, 0.5), score)
    assert var == pytest.approx(paired.se**2, rel=1e-12)


def test_groups_equal_each_group_alone() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    group = rng.integers(0, 7, n)
    y = rng.random(n) < 0.2 + 0.05 * group
    score = np.round(rng.random(n) * 0.5 + 0.3 * y + 0.02 * group, 3)
    auc, var, pos, neg = grouped_delong_auc(y, score, group, 8)
    for g in range(7):
        alone = delong_auc(y[group == g], score[group == g])
        assert (auc[g], var[g]) == pytest.approx(alone, rel=1e-12)
        assert pos[g] == (y & (group == g)).sum()
        assert pos[g] + neg[g] == (group == g).sum()
    assert np.isnan(auc[7])
    assert pos[7] == neg[7] == 0


def test_bad_labels_and_lengths_are_schema_errors_naming_the_field() -> None:
    with pytest.raises(SchemaError, match="y_true: expected binary"):
        delong_auc([0, 2], [0.1, 0.2])
    with pytest.raises(SchemaError, match="y_score: has 1 rows"):
        delong_auc([0, 1], [0.1])
    with pytest.raises(SchemaError, match="y_score: expected finite"):
        delong_auc([0, 1], [0.1, float("nan")])
