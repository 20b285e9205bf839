"""Layer 5, serving: the HTTP server that meets traffic.

Open Inference Protocol V2, the MLflow scoring protocol and the native entity-keyed
protocol over one runtime that routes each request by its endpoint's deployment
(single, shadow, canary, A/B, bandit), runs models behind adaptive micro-batching,
timeouts and circuit breakers, falls back to the champion and then to a default
response, enforces canary guardrails, remembers idempotent requests, and logs every
prediction off the request path.

Imports only layers below it: features, registry, validation, storage, stats, core.
"""

from __future__ import annotations

from prodml.serving._admin import AdminAction
from prodml.serving._app import create_app
from prodml.serving._auth import CSRF_HEADER, SESSION_COOKIE, Tokens, credentials, csrf_token
from prodml.serving._endpoint import routed_arms
from prodml.serving._errors import status_of
from prodml.serving._feedback import parse_feedback
from prodml.serving._label_jobs import LabelJobRun, run_label_jobs
from prodml.serving._labels import import_labels
from prodml.serving._metrics import ServingMetrics
from prodml.serving._prediction import Prediction
from prodml.serving._predlog import PredictionLog
from prodml.serving._runtime import ServingRuntime

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AdminAction",
    "LabelJobRun",
    "Prediction",
    "PredictionLog",
    "ServingMetrics",
    "ServingRuntime",
    "Tokens",
    "create_app",
    "credentials",
    "csrf_token",
    "import_labels",
    "parse_feedback",
    "routed_arms",
    "run_label_jobs",
    "status_of",
]
