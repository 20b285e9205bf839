"""Sticky, replica-independent assignment of routing units to arms by hashing.

Every serving replica must send the same user to the same arm without talking to the
others, so the arm is a pure function of (unit, salt, weights): the unit is hashed with
BLAKE2b into a uniform number in [0, 1), and the arms, in sorted name order, partition
[0, 1) into consecutive intervals as wide as their normalised weights.

Ramp guarantee: arm *i* owns ``[c[i-1], c[i])`` where ``c`` are the cumulative
normalised weights in sorted-name order, so a unit changes arm only when a boundary
passes over its hash. Hence

* with two arms, growing one arm never moves a unit off it, and exactly ``|Δw|`` of the
  units move (the fewest possible) — a canary ramp 5% → 25% → 100% only ever adds
  units to the canary;
* with any number of arms, an arm whose interval only widens (its lower boundary does
  not rise and its upper boundary does not fall) keeps every unit it had — in
  particular, raising one arm's weight while the others' weights stay the same never
  moves a unit off that arm (units may shift between the other arms, though).

Use a different salt per decision (routing, shadow sampling, each experiment): hashes
under different salts are independent.

>>> assign("user-42", "exp-1", {"champion": 0.9, "challenger": 0.1})
'champion'
>>> assign_many(["u1", "u2", "u3"], "exp-1", {"a": 1.0, "b": 0.0})
['a', 'a', 'a']
>>> round(unit_hash("user-42", "exp-1"), 6)
0.197642
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from itertools import accumulate

import numpy as np

from prodml.core.errors import ConfigError, SchemaError

__all__ = [
    "Assigner",
    "assign",
    "assign_many",
    "finite_float",
    "sample_fraction",
    "unit_hash",
]

#: 2**-53: maps the top 53 bits of the digest onto the float grid of [0, 1).
_SCALE = 2.0**-53


def unit_hash(unit: str, salt: str) -> float:
    """A uniform number in [0, 1) for ``unit`` under ``salt``.

    The first 8 bytes of ``blake2b(salt + "\\0" + unit)`` (UTF-8, default 64-byte
    digest) read big-endian; the top 53 bits become the float. Stable across processes,
    machines and Python versions (never Python's randomised ``hash()``).

    >>> unit_hash("user-42", "exp-1") == unit_hash("user-42", "exp-1")
    True
    >>> 0.0 <= unit_hash("user-42", "exp-2") < 1.0
    True
    """
    if not isinstance(salt, str):
        raise ConfigError(f"assignment salt must be a str, got {type(salt).__name__}")
    if not isinstance(unit, str):
        raise SchemaError(f"routing unit must be a str, got {type(unit).__name__} {unit!r}")
    digest = hashlib.blake2b(f"{salt}\0{unit}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) * _SCALE


def finite_float(value: object) -> float | None:
    """``value`` as a float if it is a finite real number (NumPy scalars included, not a
    bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _boundaries(weights: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    """Arm names in sorted order and the upper ends of their intervals in [0, 1]."""
    if not weights:
        raise ConfigError("assignment weights are empty; expected at least one arm")
    names = sorted(weights)
    values: list[float] = []
    for name in names:
        w = finite_float(weights[name])
        if w is None or w < 0:
            raise ConfigError(
                f"weight of arm {name!r} must be a finite number >= 0, got {weights[name]!r}"
            )
        values.append(w)
    total = math.fsum(values)
    if total <= 0:
        raise ConfigError(f"assignment weights must have a positive sum, got {dict(weights)!r}")
    upper = [c / total for c in accumulate(values)]
    # The last arm with weight ends exactly at 1.0 so that rounding never leaves a sliver
    # for trailing zero-weight arms (or beyond the last arm).
    last = max(i for i, w in enumerate(values) if w > 0)
    upper[last:] = [1.0] * (len(upper) - last)
    return names, np.asarray(upper, dtype=np.float64)


def assign(unit: str, salt: str, weights: Mapping[str, float]) -> str:
    """The arm for a routing unit; the same unit, salt and weights give the same arm on
    every replica. Zero-weight arms are never chosen.

    >>> assign("user-7", "exp-1", {"b": 0.0, "a": 2.0})
    'a'
    """
    return assign_many([unit], salt, weights)[0]


def assign_many(units: Sequence[str], salt: str, weights: Mapping[str, float]) -> list[str]:
    """:func:`assign` for many units at once (one vectorised interval lookup).

    >>> assign_many(["user-42"], "exp-1", {"champion": 0.9, "challenger": 0.1})
    ['champion']
    """
    names, upper = _boundaries(weights)
    hashes = np.fromiter((unit_hash(u, salt) for u in units), np.float64, count=len(units))
    # side="right": the arm i with upper[i-1] <= h < upper[i]; empty intervals never match.
    index = np.searchsorted(upper, hashes, side="right")
    return [names[i] for i in index.tolist()]


class Assigner:
    """:func:`assign` with the weights prepared once, for the request path (one hash and
    one bisection per call).

    >>> choose = Assigner({"champion": 0.9, "challenger": 0.1})
    >>> choose("user-42", "exp-1") == assign("user-42", "exp-1", {"champion": 0.9, "challenger": 0.1})
    True
    """

    __slots__ = ("_names", "_upper")

    def __init__(self, weights: Mapping[str, float]) -> None:
        names, upper = _boundaries(weights)
        self._names = names
        self._upper = upper.tolist()

    def __call__(self, unit: str, salt: str) -> str:
        index = bisect.bisect_right(self._upper, unit_hash(unit, salt))
        return self._names[min(index, len(self._names) - 1)]


def sample_fraction(unit: str, salt: str, fraction: float) -> bool:
    """Whether ``unit`` is in the deterministic ``fraction`` sample under ``salt`` (e.g.
    requests mirrored to a shadow model). Samples are nested: a unit sampled at 5% is
    also sampled at 10%.

    >>> sample_fraction("user-42", "shadow", 1.0), sample_fraction("user-42", "shadow", 0.0)
    (True, False)
    """
    share = finite_float(fraction)
    if share is None or not 0.0 <= share <= 1.0:
        raise ConfigError(f"sample fraction must be a number in [0, 1], got {fraction!r}")
    return unit_hash(unit, salt) < share
