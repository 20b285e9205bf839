"""Layer 1, pure statistics (NumPy only, usable without a project): sticky weighted
assignment of routing units to arms, and Thompson-sampling bandit policies with shared,
mergeable state.

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

__all__ = [
    "PRIOR_MEAN_VARIANCE",
    "PRIOR_NOISE_VARIANCE",
    "Assigner",
    "BanditKind",
    "BanditState",
    "BetaArm",
    "Decision",
    "GaussianArm",
    "assign",
    "assign_many",
    "choose",
    "finite_float",
    "probabilities",
    "sample_fraction",
    "unit_hash",
]
