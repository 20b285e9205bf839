"""The answer to one request, as the pipeline hands it to the log and the codecs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodml.validation import RowViolation

__all__ = ["Prediction"]


@dataclass(frozen=True)
class Prediction:
    """The answer to one request: scores per row, which arm and model gave them, and
    whether it came from a fallback (``status`` ``fallback``) or the default response
    (``degraded``)."""

    request_id: str
    endpoint: str
    arm: str
    model: str | None
    scores: np.ndarray
    status: str
    propensity: float | None = None
    fallback_from: str | None = None
    violations: tuple[RowViolation, ...] = ()
    #: The deployment role of the arm that answered (champion, challenger, canary…;
    #: None for the default response).
    role: str | None = None
    #: The stratum the request was routed in (stratified assignment), else None.
    stratum: str | None = None
