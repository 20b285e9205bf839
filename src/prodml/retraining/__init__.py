"""Layer 6, retraining: policies that decide when a model is retrained (schedules,
debounced drift and performance triggers, cooldowns), and a controller that runs each
retrain as a recorded job — validate → training set → train → evaluate and gate →
register → approve → hand over to the rollout controller — leaving the champion
serving whatever fails."""

from __future__ import annotations

from prodml.core._retraining_config import RetrainingConfig, RetrainPolicyConfig, TriggerConfig
from prodml.retraining._controller import (
    CONTROLLER,
    FAILED_RULE,
    LEASE,
    REJECTED_RULE,
    HandOff,
    Heartbeat,
    PolicyFailure,
    Retraining,
)
from prodml.retraining._store import FINISHED, JobStore, RetrainJob, Step
from prodml.retraining._triggers import Fired, TriggerCheck, drift_share

__all__ = [
    "CONTROLLER",
    "FAILED_RULE",
    "FINISHED",
    "LEASE",
    "REJECTED_RULE",
    "Fired",
    "HandOff",
    "Heartbeat",
    "JobStore",
    "PolicyFailure",
    "RetrainJob",
    "RetrainPolicyConfig",
    "Retraining",
    "RetrainingConfig",
    "Step",
    "TriggerCheck",
    "TriggerConfig",
    "drift_share",
]
