"""The rollout page renders what the records say: the effect with its interval over
time, a breached guardrail and a biased split flagged, the bandit's posteriors, every
decision — escaped, and with nothing fetched from elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime

from prodml.rollout import render_rollout_report

STATUS = {
    "endpoint": "delay",
    "status": "rolled_back",
    "plan": {"kind": "canary", "metric": "log_loss", "challenger": "m:2",
             "steps": [{"weight": 0.05}, {"weight": 0.5}],
             "guardrails": [{"metric": "error_rate", "margin": 0.01, "relative": False}]},
    "state": {"step": 1, "started_at": "2013-06-01T00:00:00+00:00"},
    "decisions": [
        {"time": "2013-06-01T01:00:00", "decision": "advance", "step": 1, "revision": 3,
         "actor": "rollout-controller", "reason": "step 1 passed"},
        {"time": "2013-06-01T02:00:00", "decision": "rollback", "step": 1, "revision": 4,
         "actor": "rollout-controller", "reason": "guardrail error_rate breached <b>"},
    ],
}  # fmt: skip
ANALYSIS = {
    "metric": "log_loss",
    "arms": [{"arm": "champion", "role": "champion", "model_versions": ["m:1"], "records": 900,
              "units": 900, "labelled": 880, "error_rate": 0.001, "latency_p99_ms": 4.0,
              "metric": {"value": 0.51}}],
    "comparisons": [{"arm": "challenger", "n_champion": 880, "n_arm": 95, "estimate": -0.02,
                     "improvement": 0.02, "sequential": {"lower": -0.01, "upper": 0.05,
                     "pvalue": 0.4}, "verdict": "inconclusive", "practical": False,
                     "power": 0.3, "guardrails": [{"metric": "error_rate",
                     "champion_value": 0.001, "arm_value": 0.2, "worse_by": 0.199,
                     "lower": 0.15, "upper": 0.25, "allowance": 0.01, "status": "breached"}]}],
    "srm": {"arms": ["challenger", "champion"], "observed": [50, 950], "expected": [95.0, 905.0],
            "p": 1e-7, "mismatch": True},
    "over_time": [{"start": f"2013-06-01T0{h}:00:00+00:00",
                   "arms": {"champion": {"n": 400, "value": 0.5},
                            "challenger": {"n": 40, "value": 0.48}},
                   "comparisons": {"challenger": {"estimate": -0.02, "ci_low": -0.05,
                                                  "ci_high": 0.01}}} for h in range(3)],
    "paired": [],
    "bandit": {"kind": "bernoulli", "regret": 12.5, "arms": {"a": {"rewards": 10,
               "mean_reward": 0.3, "posterior_mean": 0.33, "posterior_sd": 0.1,
               "prob_best": 0.2, "mean_propensity": 0.5}}},
}  # fmt: skip


def test_the_page_shows_the_experiment_and_its_decisions() -> None:
    html = render_rollout_report(STATUS, ANALYSIS, generated_at=datetime(2013, 6, 2, tzinfo=UTC))
    assert "<h1>Rollout of delay</h1>" in html
    assert html.count("<svg") == 2  # traffic and the effect with its band
    assert '<span class="bad">breached</span>' in html
    assert "mismatch: the split is biased" in html
    assert "estimated regret 12.5" in html
    assert "guardrail error_rate breached &lt;b&gt;" in html  # reasons are escaped
    assert "<b>50%</b>" in html  # the current step
    assert "src=" not in html
    assert "<script" not in html
