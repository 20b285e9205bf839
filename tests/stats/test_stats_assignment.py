"""Sticky weighted assignment: pinned hashes, shares, zero weights, ramp monotonicity,
salt independence and errors, checked against hashlib and binomial/chi-square bounds."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prodml.core.errors import ConfigError, SchemaError
from prodml.stats import Assigner, assign, assign_many, sample_fraction, unit_hash

#: The chi-square (1 degree of freedom) quantile with upper tail 0.001.
CHI2_1DF_999 = 10.828
UNITS = [f"user-{i}" for i in range(20_000)]
FEW_UNITS = UNITS[:400]
ARM_NAMES = st.text(alphabet="abcxyz-_0", min_size=1, max_size=6)


def _reference_hash(unit: str, salt: str) -> float:
    digest = hashlib.blake2b((salt + "\0" + unit).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def test_unit_hash_is_pinned_and_matches_blake2b() -> None:
    # Pinned literal: a change of hash function, byte order or encoding moves every user.
    assert unit_hash("user-1", "salt") == 0.7630609812410073
    for unit in ["user-1", "", "ünïcode", "a\0b"]:
        for salt in ["salt", "", "exp-2024"]:
            assert abs(unit_hash(unit, salt) - _reference_hash(unit, salt)) < 2**-52


def test_assignment_is_stable_across_processes() -> None:
    code = (
        "from prodml.stats import assign, unit_hash;"
        "print(unit_hash('user-1', 'salt'), assign('user-42', 'exp-1', {'a': 1, 'b': 1}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    here = f"{unit_hash('user-1', 'salt')!r} {assign('user-42', 'exp-1', {'a': 1, 'b': 1})}"
    assert result.stdout.strip() == here


def _chi2_independence(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson's chi-square statistic of the 2×2 table of two boolean columns."""
    table = np.array(
        [[np.sum(first & second), np.sum(first & ~second)],
         [np.sum(~first & second), np.sum(~first & ~second)]],
        dtype=np.float64,
    )  # fmt: skip
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    return float(np.sum((table - expected) ** 2 / expected))


def test_same_inputs_give_same_arm_regardless_of_weight_order() -> None:
    weights = {"stable": 0.7, "canary": 0.2, "other": 0.1}
    reordered = {"other": 0.1, "stable": 0.7, "canary": 0.2}
    first = assign_many(FEW_UNITS, "exp", weights)
    assert first == assign_many(FEW_UNITS, "exp", reordered)
    assert first == [assign(unit, "exp", weights) for unit in FEW_UNITS]
    assert assign("user-42", "exp-1", {"champion": 0.9, "challenger": 0.1}) == "champion"
    assert assign_many([], "exp", weights) == []


def test_arms_own_consecutive_intervals_in_sorted_order() -> None:
    weights = {"b": 3.0, "a": 1.0, "c": 0.0, "d": 4.0}  # a: [0, .125), b: [.125, .5), d: [.5, 1)
    for unit, arm in zip(FEW_UNITS, assign_many(FEW_UNITS, "s", weights), strict=True):
        h = _reference_hash(unit, "s")
        expected = "a" if h < 0.125 else "b" if h < 0.5 else "d"
        assert arm == expected


def test_empirical_shares_match_weights() -> None:
    weights = {"a": 0.2, "b": 0.5, "c": 0.3, "z": 0.0}
    arms = np.array(assign_many(UNITS, "shares", weights))
    n = len(UNITS)
    for arm, w in weights.items():
        share = float(np.mean(arms == arm))
        tolerance = 4.5 * math.sqrt(w * (1 - w) / n)
        assert abs(share - w) <= tolerance, (arm, share, w)


@pytest.mark.parametrize(
    "weights",
    [
        {"a": 0.0, "b": 1.0},
        {"a": 1.0, "b": 0.0},
        {"a": 1.0, "b": 0.0, "c": 2.0},
        {"a": 0.0, "b": 0.0, "c": 1e-9},
        {"a": 3.0, "m": 0.0, "y": 0.0, "z": 0.0},
    ],
)
def test_zero_weight_arms_are_never_chosen(weights: dict[str, float]) -> None:
    chosen = set(assign_many(UNITS[:5000], "zeros", weights))
    assert chosen == {arm for arm, w in weights.items() if w > 0}


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(ARM_NAMES, min_size=2, max_size=2, unique=True),
    old=st.floats(0.0, 1.0),
    step=st.floats(0.0, 1.0),
    salt=st.text(max_size=5),
)
def test_two_arm_ramp_moves_only_units_onto_the_growing_arm(
    names: list[str], old: float, step: float, salt: str
) -> None:
    stable, canary = names
    new = old + (1.0 - old) * step
    before = assign_many(FEW_UNITS, salt, {stable: 1.0 - old, canary: old})
    after = assign_many(FEW_UNITS, salt, {stable: 1.0 - new, canary: new})
    moved = {u for u, b, a in zip(FEW_UNITS, before, after, strict=True) if b != a}
    assert all(b == stable and a == canary for b, a in zip(before, after, strict=True) if b != a)
    # Exactly the units whose hash lies between the old and the new boundary move (up to
    # float rounding of the normalised boundary for hashes within 1e-9 of it).
    lo, hi = (old, new) if canary == min(names) else (1.0 - new, 1.0 - old)
    hashes = {u: _reference_hash(u, salt) for u in FEW_UNITS}
    expected = {u for u, h in hashes.items() if lo <= h < hi}
    near = {u for u, h in hashes.items() if min(abs(h - lo), abs(h - hi)) < 1e-9}
    assert moved ^ expected <= near


@settings(max_examples=40, deadline=None)
@given(
    weights=st.dictionaries(ARM_NAMES, st.floats(0.01, 10.0), min_size=2, max_size=5),
    pick=st.integers(0, 4),
    factor=st.floats(1.0, 20.0),
    salt=st.text(max_size=5),
)
def test_growing_one_arm_never_moves_a_unit_off_it(
    weights: dict[str, float], pick: int, factor: float, salt: str
) -> None:
    grown = sorted(weights)[pick % len(weights)]
    before = assign_many(FEW_UNITS, salt, weights)
    after = assign_many(FEW_UNITS, salt, {**weights, grown: weights[grown] * factor})
    assert all(a == grown for b, a in zip(before, after, strict=True) if b == grown)


def test_different_salts_give_independent_assignments() -> None:
    weights = {"a": 0.5, "b": 0.5}
    first = np.array(assign_many(UNITS, "routing", weights)) == "a"
    second = np.array(assign_many(UNITS, "experiment-2", weights)) == "a"
    shadow = np.array([sample_fraction(u, "shadow", 0.3) for u in UNITS])
    for other in (second, shadow):
        assert _chi2_independence(first, other) < CHI2_1DF_999
    # The check has power: the same salt is fully dependent.
    same = np.array(assign_many(UNITS, "routing", weights)) == "a"
    assert _chi2_independence(first, same) > 1000


def test_sample_fraction_share_and_nesting() -> None:
    small = np.array([sample_fraction(u, "shadow", 0.05) for u in UNITS])
    large = np.array([sample_fraction(u, "shadow", 0.10) for u in UNITS])
    assert abs(small.mean() - 0.05) <= 4.5 * math.sqrt(0.05 * 0.95 / len(UNITS))
    assert abs(large.mean() - 0.10) <= 4.5 * math.sqrt(0.10 * 0.90 / len(UNITS))
    assert not np.any(small & ~large)  # sampled at 5% ⇒ sampled at 10%
    assert all(sample_fraction(u, "shadow", 1.0) for u in FEW_UNITS)
    assert not any(sample_fraction(u, "shadow", 0.0) for u in FEW_UNITS)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({}, "empty"),
        ({"a": 1.0, "canary": -0.1}, "'canary'.*>= 0"),
        ({"a": 1.0, "canary": math.nan}, "'canary'"),
        ({"a": math.inf}, "'a'"),
        ({"a": True}, "'a'"),
        ({"a": "0.5"}, "'a'"),
        ({"a": 0.0, "b": 0.0}, "positive sum"),
    ],
)
def test_invalid_weights_raise_config_error_naming_the_arm(
    weights: dict[str, float], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        assign("user-1", "salt", weights)


def test_invalid_fraction_unit_and_salt() -> None:
    for fraction in (-0.1, 1.5, math.nan, True):
        with pytest.raises(ConfigError, match="fraction"):
            sample_fraction("user-1", "salt", fraction)
    with pytest.raises(SchemaError, match="routing unit"):
        assign(42, "salt", {"a": 1.0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="salt"):
        unit_hash("user-1", None)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    weights=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "champion"]),
        st.floats(min_value=0.0, max_value=10.0),
        min_size=1,
    ).filter(lambda w: sum(w.values()) > 0),
    units=st.lists(st.text(max_size=12), min_size=1, max_size=30),
    salt=st.text(max_size=8),
)
def test_prepared_assigner_agrees_with_assign(
    weights: dict[str, float], units: list[str], salt: str
) -> None:
    prepared = Assigner(weights)
    assert [prepared(u, salt) for u in units] == assign_many(units, salt, weights)
