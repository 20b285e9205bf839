"""Distances between two discrete distributions given as share vectors over the same
bins or categories: PSI, Jensen–Shannon distance, Hellinger, Kullback–Leibler and the
L-infinity (largest share difference).

Empty bins would make the log-ratio measures (PSI, KL) infinite, so those two first
replace zero shares by ``ZERO_SHARE`` (1e-4, as Evidently does) with :func:`smooth`;
Jensen–Shannon and Hellinger are finite on empty bins and take the shares as they are
(so Jensen–Shannon equals SciPy's and Evidently's on the same bins).

>>> p = np.array([0.5, 0.3, 0.2])
>>> q = np.array([0.3, 0.3, 0.4])
>>> round(psi(p, q), 6)
0.240795
>>> round(jensen_shannon(p, q), 6)
0.172115
>>> round(hellinger(p, q), 6)
0.172797
>>> round(kl(p, q), 6)
0.124011
>>> float(linf(p, q))
0.2
>>> shares(np.array([0, 2, 3]))
array([0. , 0.4, 0.6])
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ZERO_SHARE",
    "hellinger",
    "jensen_shannon",
    "kl",
    "linf",
    "psi",
    "shares",
    "smooth",
]

#: Share that replaces an empty bin before a log-ratio is taken.
ZERO_SHARE = 1e-4


def shares(counts: ArrayLike) -> NDArray[np.float64]:
    """``counts`` divided by their total (all zeros when the total is 0)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def smooth(p: ArrayLike, zero: float = ZERO_SHARE) -> NDArray[np.float64]:
    """``p`` with every zero share replaced by ``zero`` (not renormalised)."""
    a = np.asarray(p, dtype=np.float64)
    return np.where(a > 0, a, zero)


def _pair(p: ArrayLike, q: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"share vectors must be 1-D and of one length, got shapes {a.shape} and {b.shape}"
        )
    return a, b


def psi(reference: ArrayLike, current: ArrayLike) -> float:
    """Population stability index ``Σ (q - p) ln(q / p)`` on smoothed shares: 0 for
    identical distributions; < 0.1 is usually read as stable, > 0.2 as a major shift."""
    p, q = _pair(reference, current)
    p, q = smooth(p), smooth(q)
    return float(np.sum((q - p) * np.log(q / p)))


def kl(reference: ArrayLike, current: ArrayLike) -> float:
    """Kullback–Leibler divergence ``KL(current ‖ reference)`` in nats, on smoothed
    shares (each renormalised to sum to 1)."""
    p, q = _pair(reference, current)
    p, q = smooth(p), smooth(q)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(q * np.log(q / p)))


def jensen_shannon(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen–Shannon *distance* (square root of the divergence, natural log; between 0
    and √ln 2 ≈ 0.83), as :func:`scipy.spatial.distance.jensenshannon` computes it: each
    side renormalised to sum to 1, empty bins contributing nothing."""
    p, q = _normalised(*_pair(reference, current), "jensen_shannon")
    m = (p + q) / 2.0
    divergence = (_plogp(p, m) + _plogp(q, m)) / 2.0
    return math.sqrt(max(divergence, 0.0))


def _plogp(p: NDArray[np.float64], m: NDArray[np.float64]) -> float:
    """``Σ p ln(p / m)`` over the bins where ``p > 0`` (``m >= p / 2 > 0`` there)."""
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / m[nz])))


def _normalised(
    p: NDArray[np.float64], q: NDArray[np.float64], name: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    sp, sq = p.sum(), q.sum()
    if not (sp > 0 and sq > 0):
        raise ValueError(f"{name}: a share vector sums to 0 (no rows on one side)")
    return p / sp, q / sq


def hellinger(reference: ArrayLike, current: ArrayLike) -> float:
    """Hellinger distance ``‖√p − √q‖₂ / √2`` (between 0 and 1), each side renormalised
    to sum to 1."""
    p, q = _normalised(*_pair(reference, current), "hellinger")
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2.0))


def linf(reference: ArrayLike, current: ArrayLike) -> float:
    """L-infinity distance: the largest absolute difference of one bin's shares."""
    p, q = _pair(reference, current)
    return float(np.max(np.abs(p - q))) if p.size else 0.0
