"""Thompson-sampling bandits: posterior updates against hand computation and NumPy,
merge against sequential updates, serialisation, burn-in, floor, propensities against
exact Thompson probabilities by numerical integration, a simulated problem, errors."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import betainc, betaln, ndtr  # type: ignore[import-untyped]

from prodml.core.errors import ConfigError, NotFoundError, SchemaError, StateError
from prodml.stats import (
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

GRID = (np.arange(200_000) + 0.5) / 200_000  # midpoints of (0, 1)


def _exact_beta_thompson(arms: dict[str, tuple[float, float]]) -> dict[str, float]:
    """P(arm's draw is the largest) = ∫ f_i(x) Π_{j≠i} F_j(x) dx, by the midpoint rule."""
    pdf = {
        name: np.exp((a - 1) * np.log(GRID) + (b - 1) * np.log1p(-GRID) - betaln(a, b))
        for name, (a, b) in arms.items()
    }
    cdf = {name: betainc(a, b, GRID) for name, (a, b) in arms.items()}
    result = {}
    for name in arms:
        others = np.prod([cdf[o] for o in arms if o != name], axis=0)
        result[name] = float(np.mean(pdf[name] * others))
    return result


def _exact_gaussian_thompson(arms: dict[str, tuple[float, float]]) -> dict[str, float]:
    """The same integral for normal posteriors (loc, scale)."""
    lo = min(m - 10 * s for m, s in arms.values())
    hi = max(m + 10 * s for m, s in arms.values())
    x = np.linspace(lo, hi, 200_001)
    dx = x[1] - x[0]
    result = {}
    for name, (m, s) in arms.items():
        pdf = np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
        others = np.prod([ndtr((x - mo) / so) for o, (mo, so) in arms.items() if o != name], axis=0)
        result[name] = float(np.sum(pdf * others) * dx)
    return result


def test_beta_update_matches_hand_computation() -> None:
    state = BanditState.new("bernoulli", ["a", "b"])
    rewards: list[Any] = [1, 0, 1, 1, True, False, 1.0, 0.0, np.bool_(True)]
    for reward in rewards:
        state = state.update("a", reward)
    # Beta(1, 1) prior + 6 successes + 3 failures.
    assert state.arms["a"] == BetaArm(alpha=7.0, beta=4.0, pulls=9)
    assert state.arms["b"] == BetaArm()
    assert list(state.arms) == ["a", "b"]


def test_gaussian_welford_matches_numpy() -> None:
    rewards = np.random.default_rng(3).normal(5.0, 2.0, size=500) ** 2
    state = BanditState.new("gaussian", ["x", "y"])
    for r in rewards:
        state = state.update("x", float(r))
    arm = state.arms["x"]
    assert isinstance(arm, GaussianArm)
    assert arm.n == arm.pulls == 500
    assert arm.mean == pytest.approx(np.mean(rewards), rel=1e-12)
    assert arm.m2 / (arm.n - 1) == pytest.approx(np.var(rewards, ddof=1), rel=1e-10)


def test_gaussian_posterior_matches_the_documented_prior() -> None:
    assert GaussianArm().posterior() == pytest.approx((0.0, math.sqrt(PRIOR_MEAN_VARIANCE)))
    arm = GaussianArm(n=4, mean=2.0, m2=12.0)
    noise = (12.0 + PRIOR_NOISE_VARIANCE) / 5  # one pseudo-observation of the noise
    precision = 1 / PRIOR_MEAN_VARIANCE + 4 / noise
    assert arm.posterior() == pytest.approx((4 * 2.0 / noise / precision, precision**-0.5))
    # With many pulls the prior washes out: mean → sample mean, sd → s / √n.
    big = GaussianArm(n=10_000, mean=3.0, m2=4.0 * 9_999)
    assert big.posterior() == pytest.approx((3.0, 2.0 / 100), rel=1e-3)


UPDATES = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 1), st.integers(0, 2)),
    max_size=40,
)


@settings(max_examples=50, deadline=None)
@given(updates=UPDATES, kind=st.sampled_from(["bernoulli", "gaussian"]))
def test_merge_of_replica_deltas_equals_sequential_updates(
    updates: list[tuple[str, int, int]], kind: BanditKind
) -> None:
    """Three replicas record updates in deltas; merging them into the shared state equals
    applying every update to it one by one."""
    shared = BanditState.new(kind, ["a", "b", "c"]).update("a", 1).update("b", 0)
    sequential = shared
    deltas = [shared.empty() for _ in range(3)]
    for i, (arm, success, replica) in enumerate(updates):
        reward = float(success) if kind == "bernoulli" else success * 3.5 - i * 0.25
        sequential = sequential.update(arm, reward)
        deltas[replica] = deltas[replica].update(arm, reward)
    merged = shared.merge(deltas[0]).merge(deltas[1]).merge(deltas[2])
    regrouped = shared.merge(deltas[2].merge(deltas[0]).merge(deltas[1]))
    for candidate in (merged, regrouped):
        for name, expected in sequential.arms.items():
            got = candidate.arms[name]
            if kind == "bernoulli":
                assert got == expected
            else:
                assert isinstance(got, GaussianArm)
                assert isinstance(expected, GaussianArm)
                assert got.n == expected.n
                assert got.mean == pytest.approx(expected.mean, rel=1e-9, abs=1e-9)
                assert got.m2 == pytest.approx(expected.m2, rel=1e-9, abs=1e-9)


def test_gaussian_merge_equals_pooled_numpy_statistics() -> None:
    rng = np.random.default_rng(5)
    left, right = rng.normal(1.0, 1.0, 300), rng.normal(4.0, 3.0, 700)
    a, b = BanditState.new("gaussian", ["x"]), BanditState.new("gaussian", ["x"])
    for r in left:
        a = a.update("x", float(r))
    for r in right:
        b = b.update("x", float(r))
    pooled = a.merge(b).arms["x"]
    assert isinstance(pooled, GaussianArm)
    both = np.concatenate([left, right])
    assert pooled.n == 1000
    assert pooled.mean == pytest.approx(both.mean(), rel=1e-12)
    assert pooled.m2 == pytest.approx(np.var(both) * 1000, rel=1e-10)


@settings(max_examples=50, deadline=None)
@given(
    rewards=st.lists(st.floats(-1e6, 1e6), max_size=20),
    successes=st.lists(st.booleans(), max_size=20),
)
def test_to_dict_from_dict_is_an_exact_json_round_trip(
    rewards: list[float], successes: list[bool]
) -> None:
    gaussian = BanditState.new("gaussian", ["z", "a"])
    for r in rewards:
        gaussian = gaussian.update("z", r)
    bernoulli = BanditState("bernoulli", {"only": BetaArm(0.5, 2.25, 0)})
    for s in successes:
        bernoulli = bernoulli.update("only", s)
    for state in (gaussian, bernoulli, gaussian.empty(), bernoulli.empty()):
        restored = BanditState.from_dict(json.loads(json.dumps(state.to_dict())))
        assert restored == state
        assert restored.to_dict() == state.to_dict()


def test_to_dict_layout() -> None:
    state = BanditState.new("bernoulli", ["b", "a"]).update("b", 1)
    assert state.to_dict() == {
        "kind": "bernoulli",
        "arms": {
            "a": {"alpha": 1.0, "beta": 1.0, "pulls": 0},
            "b": {"alpha": 2.0, "beta": 1.0, "pulls": 1},
        },
    }


def test_burn_in_chooses_uniformly_among_arms_below_it() -> None:
    state = BanditState(
        "bernoulli", {"a": BetaArm(90.0, 1.0, 89), "b": BetaArm(1.0, 2.0, 1), "c": BetaArm()}
    )
    rng = np.random.default_rng(11)
    decisions = [choose(state, rng, burn_in=2, draws=10) for _ in range(2000)]
    counts = Counter(d.arm for d in decisions)
    assert set(counts) == {"b", "c"}
    assert abs(counts["b"] / 2000 - 0.5) <= 4 * math.sqrt(0.25 / 2000)
    assert all(d.propensity == 0.5 and d.explored for d in decisions)
    assert probabilities(state, rng, burn_in=2) == {"a": 0.0, "b": 0.5, "c": 0.5}
    # Once every arm has burn_in pulls, the posterior decides.
    assert not choose(state.update("c", 1), rng, burn_in=1).explored


def test_floor_is_respected_for_hopeless_arms() -> None:
    state = BanditState(
        "bernoulli",
        {
            "a": BetaArm(500.0, 1.0, 499),
            "b": BetaArm(1.0, 500.0, 499),
            "c": BetaArm(1.0, 500.0, 499),
        },
    )
    rng = np.random.default_rng(12)
    n, floor = 4000, 0.05
    decisions = [choose(state, rng, floor=floor, draws=50) for _ in range(n)]
    shares = Counter(d.arm for d in decisions)
    for arm in ("b", "c"):
        assert shares[arm] / n >= floor - 4 * math.sqrt(floor * (1 - floor) / n)
    hopeless = [d for d in decisions if d.arm != "a"]
    assert all(d.explored and d.propensity == pytest.approx(floor) for d in hopeless)
    assert {d.propensity for d in decisions if d.arm == "a" and not d.explored} == {1 - 2 * floor}
    # A floor of 1/k is uniform.
    uniform = [choose(state, rng, floor=1 / 3) for _ in range(300)]
    assert {d.arm for d in uniform} == {"a", "b", "c"}
    assert all(d.propensity == 1 / 3 and d.explored for d in uniform)
    assert probabilities(state, rng, floor=1 / 3) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )


def test_propensities_sum_to_one_and_match_exact_and_empirical_frequencies() -> None:
    params = {"a": (3.0, 5.0), "b": (4.0, 4.0), "c": (6.0, 7.0)}
    state = BanditState("bernoulli", {k: BetaArm(a, b, 10) for k, (a, b) in params.items()})
    floor = 0.1
    exact_ts = _exact_beta_thompson(params)
    exact = {arm: floor + (1 - 3 * floor) * p for arm, p in exact_ts.items()}
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-6)

    rng = np.random.default_rng(21)
    estimated = probabilities(state, rng, floor=floor, draws=200_000)
    assert sum(estimated.values()) == pytest.approx(1.0, abs=1e-12)
    for arm in params:  # Monte Carlo sd ≤ 0.7·√(0.25/200k) ≈ 0.0008
        assert estimated[arm] == pytest.approx(exact[arm], abs=0.004)

    n, draws = 3000, 400
    decisions = [choose(state, rng, floor=floor, draws=draws) for _ in range(n)]
    counts = Counter(d.arm for d in decisions)
    for arm, p in exact.items():
        assert abs(counts[arm] / n - p) <= 4.5 * math.sqrt(p * (1 - p) / n), arm
        mean_propensity = np.mean([d.propensity for d in decisions if d.arm == arm])
        assert mean_propensity == pytest.approx(p, abs=0.02), arm
    assert min(d.propensity for d in decisions) > 0.0


def test_gaussian_propensities_match_exact_integral() -> None:
    state = BanditState(
        "gaussian",
        {
            "a": GaussianArm(20, 1.0, 30.0),
            "b": GaussianArm(15, 1.3, 20.0),
            "c": GaussianArm(5, 0.5, 4.0),
        },
    )
    exact = _exact_gaussian_thompson(
        {name: arm.posterior() for name, arm in state.arms.items() if isinstance(arm, GaussianArm)}
    )
    estimated = probabilities(state, np.random.default_rng(4), draws=200_000)
    assert sum(estimated.values()) == pytest.approx(1.0, abs=1e-12)
    for arm, p in exact.items():
        assert estimated[arm] == pytest.approx(p, abs=0.005)
    best = BanditState(
        "gaussian", {"low": GaussianArm(100, 0.0, 99.0), "high": GaussianArm(100, 5.0, 99.0)}
    )
    assert choose(best, np.random.default_rng(0)) == Decision("high", 1.0, False)


def test_simulated_bernoulli_problem_finds_the_best_arm() -> None:
    rates = {"a": 0.05, "b": 0.06, "c": 0.08}
    policy_rng, world_rng = np.random.default_rng(2024), np.random.default_rng(7)
    state = BanditState.new("bernoulli", rates)
    chosen = []
    # draws only sets the precision of the propensity; the choice itself is one exact
    # posterior draw whatever its value, so a small one keeps the test fast.
    for _ in range(5000):
        decision = choose(state, policy_rng, burn_in=20, draws=64)
        state = state.update(decision.arm, world_rng.random() < rates[decision.arm])
        chosen.append(decision.arm)
    last = Counter(chosen[-2000:])
    assert last["c"] > 1000, last
    assert sum(arm.pulls for arm in state.arms.values()) == 5000


def test_choose_is_deterministic_for_a_seed() -> None:
    state = BanditState.new("bernoulli", ["a", "b", "c"]).update("a", 1).update("c", 0)
    first = [choose(state, np.random.default_rng(9), floor=0.1) for _ in range(3)]
    assert first == [choose(state, np.random.default_rng(9), floor=0.1)] * 3


def test_update_errors_name_the_arm() -> None:
    bern = BanditState.new("bernoulli", ["a", "b"])
    with pytest.raises(NotFoundError, match=r"'zz'.*\['a', 'b'\]"):
        bern.update("zz", 1)
    for bad in (0.5, 2, -1, math.nan, "1", None):
        with pytest.raises(SchemaError, match=r"'a'.*0 or 1"):
            bern.update("a", bad)  # type: ignore[arg-type]
    gauss = BanditState.new("gaussian", ["g"])
    for bad in (math.nan, math.inf, "3.0"):
        with pytest.raises(SchemaError, match=r"'g'.*finite"):
            gauss.update("g", bad)  # type: ignore[arg-type]


def test_state_errors_name_the_field() -> None:
    with pytest.raises(SchemaError, match=r"BetaArm.alpha.*>= 0"):
        BetaArm(alpha=-1.0)
    with pytest.raises(SchemaError, match=r"GaussianArm.n.*int"):
        GaussianArm(n=1.5)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=r"'a'.*GaussianArm"):
        BanditState("gaussian", {"a": BetaArm()})
    with pytest.raises(SchemaError, match="kind"):
        BanditState.new("poisson", ["a"])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="non-empty"):
        BanditState("bernoulli", {})
    with pytest.raises(SchemaError, match="unique"):
        BanditState.new("bernoulli", ["a", "a"])
    good = BanditState.new("bernoulli", ["a"]).to_dict()
    with pytest.raises(SchemaError, match=r"arm 'a'.*BetaArm.beta"):
        BanditState.from_dict({**good, "arms": {"a": {"alpha": 1.0, "beta": -2.0, "pulls": 0}}})
    with pytest.raises(SchemaError, match=r"arm 'a'.*fields"):
        BanditState.from_dict({**good, "arms": {"a": {"alpha": 1.0, "pulls": 0}}})
    with pytest.raises(SchemaError, match="keys"):
        BanditState.from_dict({**good, "version": 2})
    with pytest.raises(SchemaError, match="kind"):
        BanditState.from_dict({**good, "kind": "poisson"})


def test_merge_errors() -> None:
    bern = BanditState.new("bernoulli", ["a", "b"])
    with pytest.raises(SchemaError, match="gaussian"):
        bern.merge(BanditState.new("gaussian", ["a", "b"]))
    with pytest.raises(SchemaError, match=r"missing \['b'\], extra \['c'\]"):
        bern.merge(BanditState.new("bernoulli", ["a", "c"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"floor": 0.34}, "floor.*k=3"),
        ({"floor": -0.01}, "floor"),
        ({"floor": math.nan}, "floor"),
        ({"burn_in": -1}, "burn_in"),
        ({"burn_in": 1.5}, "burn_in"),
        ({"draws": 0}, "draws"),
    ],
)
def test_policy_errors(kwargs: dict[str, float], match: str) -> None:
    state = BanditState.new("bernoulli", ["a", "b", "c"])
    with pytest.raises(ConfigError, match=match):
        choose(state, np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        probabilities(state, np.random.default_rng(0), **kwargs)  # type: ignore[arg-type]


def test_choosing_needs_a_generator_and_a_prior() -> None:
    state = BanditState.new("bernoulli", ["a", "b"])
    with pytest.raises(ConfigError, match="Generator"):
        choose(state, np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(StateError, match=r"\['a', 'b'\].*merge"):
        choose(state.empty().update("a", 1), np.random.default_rng(0))
