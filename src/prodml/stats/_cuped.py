"""CUPED: variance reduction with a pre-experiment covariate ``X`` (the same metric
before exposure, say). Each unit's ``Y`` becomes ``Y − θ (X − X̄)``, which keeps every
arm's expected mean (``X`` is independent of the arm by randomisation) and removes the
part of the variance ``X`` explains.

One ``θ`` serves both arms: the pooled within-arm slope
``Σ_arms Σ (x − x̄_arm)(y − ȳ_arm) / Σ_arms Σ (x − x̄_arm)²``, i.e. cov(Y, X) / var(X)
pooled over the arms like a pooled variance, so that a difference between the arms does
not leak into ``θ``. With it the adjusted difference equals, exactly, the OLS
coefficient of the treatment indicator in ``Y ~ 1 + T + (X − X̄)``. ``X̄`` is the mean
over both arms. The test is Welch's on the adjusted values (the uncertainty of ``θ`` is
of order ``1/n`` and ignored, as usual), and ``variance_reduction`` is
``1 − var(Y_adj) / var(Y)`` within arms, the squared pooled within-arm correlation.

>>> res = cuped([3.0, 5.0, 4.0, 6.0], [1.0, 3.0, 2.0, 4.0],
...             [5.0, 6.0, 8.0, 7.0], [1.0, 2.0, 4.0, 3.0])
>>> res.theta, res.adjusted_mean_control, res.adjusted_mean_treatment
(1.0, 4.5, 6.5)
>>> res.variance_reduction, res.test.estimate
(1.0, 2.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from prodml.core.errors import SchemaError
from prodml.stats._ab_tests import Alternative, TwoSampleTest, welch_ttest
from prodml.stats._metrics import finite_floats

__all__ = ["CupedResult", "cuped"]


@dataclass(frozen=True)
class CupedResult:
    """Raw and CUPED-adjusted arm means, the slope ``theta``, the share of variance
    removed and the Welch test of the adjusted difference (treatment − control)."""

    theta: float
    mean_control: float
    mean_treatment: float
    adjusted_mean_control: float
    adjusted_mean_treatment: float
    variance_reduction: float
    test: TwoSampleTest

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the test as a nested dict."""
        data = asdict(self)
        data["test"] = self.test.to_dict()
        return data


def _arm(y: npt.ArrayLike, x: npt.ArrayLike, name: str) -> tuple[Any, Any]:
    ys, xs = finite_floats(y, f"y_{name}"), finite_floats(x, f"x_{name}")
    if len(ys) != len(xs):
        raise SchemaError(f"x_{name}: has {len(xs)} units but y_{name} has {len(ys)}")
    if len(ys) < 2:
        raise SchemaError(f"y_{name}: expected >= 2 units, got {len(ys)}")
    return ys, xs


def cuped(
    y_control: npt.ArrayLike,
    x_control: npt.ArrayLike,
    y_treatment: npt.ArrayLike,
    x_treatment: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> CupedResult:
    """CUPED-adjusted comparison of ``y`` between the arms with covariate ``x`` (one
    entry per unit). A covariate constant within the arms gives ``theta = 0``."""
    yc, xc = _arm(y_control, x_control, "control")
    yt, xt = _arm(y_treatment, x_treatment, "treatment")
    dyc, dxc = yc - yc.mean(), xc - xc.mean()
    dyt, dxt = yt - yt.mean(), xt - xt.mean()
    sxx = float(dxc @ dxc + dxt @ dxt)
    sxy = float(dxc @ dyc + dxt @ dyt)
    syy = float(dyc @ dyc + dyt @ dyt)
    theta = sxy / sxx if sxx > 0 else 0.0
    x_bar = float(np.concatenate([xc, xt]).mean())
    adj_c = yc - theta * (xc - x_bar)
    adj_t = yt - theta * (xt - x_bar)
    residual = syy - theta * sxy  # Σ within-arm squares of the adjusted values
    reduction = 1.0 - max(residual, 0.0) / syy if syy > 0 else 0.0
    return CupedResult(
        theta=theta,
        mean_control=float(yc.mean()),
        mean_treatment=float(yt.mean()),
        adjusted_mean_control=float(adj_c.mean()),
        adjusted_mean_treatment=float(adj_t.mean()),
        variance_reduction=reduction,
        test=welch_ttest(adj_c, adj_t, alpha=alpha, alternative=alternative),
    )
