"""The model half of the demo: train the January–March model (its clock stands at
1 April 2013), gate it (no champion yet: value thresholds alone), approve it, alias it
``champion`` and deploy it alone on endpoint ``flight_delay``. Every later model comes
from the retraining controller during the replay (:mod:`prodml.demo._loop`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prodml.project import Project
from prodml.registry import DeploymentSpec
from prodml.training import TrainingResult

__all__ = ["DEMO_CONFIG", "train_models"]

Echo = Callable[[str], None]

JAN, APR = (datetime(2013, m, 1, tzinfo=UTC) for m in (1, 4))

#: prodml.toml of the demo project.
DEMO_CONFIG = """\
# prodml project configuration of the flights demo.
[project]
name = "flights"

[training]
module = "train.py"
segments = ["origin", "carrier"]     # metrics per airport and per airline
slice_min_rows = 200
validation_fraction = 0.0            # no early stopping, no calibration: no validation split
refit = "full"                       # after the gate, refit on the whole window: that is served
test_split = "champion"              # test on the rows after the champion's data (see [gate])

[gate]
thresholds = ["roc_auc >= 0.60"]     # a floor; the champion sets the bar
latency_p99_ms = 250
robustness = true

# Against the champion, on the same test rows. With test_split = "champion" the candidate
# as evaluated learned from data up to where the champion's ended, and both are scored on
# the weeks after it, which neither saw: the gate judges the recipe like for like, and
# the canary judges the refitted model (which has also seen those weeks) on live traffic.
[[gate.change]]
metric = "roc_auc"
max_degradation = 0.01

[[gate.change]]
metric = "log_loss"
max_degradation = 0.05
relative = true

[[gate.change]]
metric = "ece"                       # no worse calibrated than the champion
max_degradation = 0.02

[[gate.change]]
metric = "roc_auc"                   # no airport or airline may lose more than 0.03
max_degradation = 0.03
per_slice = true

[registry]
require_approval = true

[monitoring]
window = "1mo"                       # monthly windows over the prediction log
segments = ["origin"]                # delayed-label performance per airport
calibration = "recent"               # estimates calibrated on the previous month's labels

[[retraining.policies]]              # the closed loop: retrain monthly on every labelled flight
name = "monthly"
model = "flight_delay"
endpoint = "flight_delay"
window = "expanding"
start = 2013-01-01T00:00:00Z
label_delay = "1d"                   # flights land within a day of departure
cooldown = "20d"
auto_approve = true                  # a BLESSED candidate is approved for the canary

[retraining.policies.rollout]        # the candidate goes to the rollout controller
steps = [0.5]                        # a canary on half the traffic
bake = "1d"                          # a day of flights, labelled when they land
min_samples = 300
metric = "roc_auc"
promote_on = "not_worse"             # the gate found the recipe sound offline; live: not worse
max_duration = "12d"
decommission_delay = "1h"
guardrails = [
    {metric = "error_rate", margin = 0.01},
    {metric = "fallback_rate", margin = 0.01},   # a failing challenger is answered by the champion
    {metric = "p99_latency_ms", margin = 0.5, relative = true},
]

[[retraining.policies.triggers]]     # at each month's start: every labelled flight so far
kind = "schedule"
every = "1mo"

[[retraining.policies.triggers]]     # sooner when the realized AUC falls, sustained
kind = "performance"
metric = "performance.roc_auc"
threshold = 0.62
m_of_n = [2, 2]
"""


def train_models(project: Project, say: Echo) -> dict[str, Any]:
    """Train, gate, register, approve and alias as described in the module docstring."""
    report: dict[str, Any] = {}
    first = project.training.train(JAN, APR, actor="demo")
    _describe(say, "January–March", first)
    version = _registered(first)
    project.registry.approve(version, actor="demo", reason="demo: first model, gate passed")
    if first.gate.blessed:
        project.registry.set_alias(
            "flight_delay", "champion", version, actor="demo", reason="first blessed model"
        )
        say(f"Approved {version} and aliased it flight_delay@champion")
    else:
        say(f"{version} is NOT_BLESSED ({'; '.join(first.gate.reasons)}): no champion set")
    report["champion"] = {**first.to_dict(), "aliased": first.gate.blessed}
    report["deployment"] = deploy_champion(project, say)
    return report


def deploy_champion(project: Project, say: Echo) -> dict[str, Any] | None:
    """Put the champion on endpoint ``flight_delay``, with the challenger (if any) in
    shadow: it sees every request, its answers are logged and never returned."""
    aliases = project.registry.aliases("flight_delay")
    if "champion" not in aliases:
        say("No champion: nothing deployed")
        return None
    champion = f"flight_delay:{aliases['champion']}"
    if "challenger" in aliases:
        spec = DeploymentSpec.shadow(champion, f"flight_delay:{aliases['challenger']}")
    else:
        spec = DeploymentSpec.single(champion)
    deployment = project.deployments.deploy(
        "flight_delay", spec, actor="demo", reason="demo: champion serves, challenger shadows"
    )
    arms = ", ".join(f"{a.name}={a.model}" for a in spec.arms)
    say(
        f"Deployed endpoint flight_delay (revision {deployment.revision}, {spec.policy}: {arms}); "
        "serve it with `prodml serve`"
    )
    return deployment.to_dict()


def _registered(result: TrainingResult) -> str:
    if result.version is None:  # pragma: no cover - train() registers by default
        raise RuntimeError("training did not register a version")
    return result.version.ref


def _describe(say: Echo, window: str, result: TrainingResult) -> None:
    metrics = result.report.metrics
    perf = result.report.performance
    versus = ""
    if result.champion_report is not None:
        versus = f" (champion {result.champion}: {result.champion_report.metrics['roc_auc']:.3f})"
    say(
        f"Trained {window} → {_registered(result)}: ROC-AUC {metrics['roc_auc']:.3f}{versus}, "
        f"log loss {metrics['log_loss']:.3f}, ECE {metrics['ece']:.3f} on "
        f"{result.report.rows:,} test rows; p99 latency {perf['latency_p99_ms']:.1f} ms; "
        f"robustness {result.robustness.detail}; gate {result.gate.status}"
    )
