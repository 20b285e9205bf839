"""``prodml init``: the files of a new project."""

from __future__ import annotations

import re
from pathlib import Path

from prodml.core import CONFIG_FILE, ConflictError

__all__ = ["init_project"]

_CONFIG = """\
# prodml project configuration. Environment variables PRODML__SECTION__KEY override it.
[project]
name = "{name}"

[metadata]
type = "sqlite"              # or "postgresql" with url = "postgresql+psycopg://user@host/db"
path = ".prodml/meta.db"

[artifacts]
type = "local"
path = ".prodml/artifacts"

[online_store]
type = "sqlite"              # "memory" | "sqlite" | "redis" (url = "redis://127.0.0.1:6379/0")
path = ".prodml/online.db"

[offline_store]
type = "duckdb"

[features]
definitions = "features.py"
created_time_guard = true    # rows created after a training row's time are invisible to it
on_violation = "error"       # "error" | "warn" | "ignore" declared expectations

[training]
module = "train.py"          # holds the @prodml.trainer function
validation_fraction = 0.15   # latest rows by time: test, then validation (never random)
test_fraction = 0.15
segments = []                # columns whose values get their own metrics, e.g. ["region"]

[gate]
thresholds = []              # e.g. ["roc_auc >= 0.70"]; change rules: [[gate.change]]
robustness = true            # the edge-case suite must pass

[registry]
require_approval = true      # production aliases (champion) need an approved version

[mlflow]
# tracking_uri = "sqlite:///mlflow.db"   # mirror runs and versions to MLflow
"""

_GITIGNORE = """\
# prodml state: never committed
.prodml/
"""

_FEATURES = '''\
"""Feature definitions of this project: `prodml features apply` stores them."""

from datetime import timedelta

import pandas as pd

from prodml.features import Entity, FeatureService, FeatureView, Field, OnDemandFeature, PythonSource


def customer_rows() -> pd.DataFrame:
    """A stand-in source: replace with ParquetSource("data/customers.parquet") or SqlSource(...)."""
    return pd.DataFrame(
        {
            "customer_id": [1, 2, 1],
            "updated_at": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-02-01"], utc=True),
            "orders_30d": [3, 7, 4],
            "spend_30d": [120.0, 310.5, 99.9],
        }
    )


customer = Entity("customer", join_keys=["customer_id"])

customer_stats = FeatureView(
    "customer_stats",
    entities=[customer],
    source=PythonSource(customer_rows),
    event_time="updated_at",
    ttl=timedelta(days=90),
    features=[Field("orders_30d", "int64"), Field("spend_30d", "float64")],
)

spend_per_order = OnDemandFeature(
    "spend_per_order",
    lambda c: c["spend_30d"] / c["orders_30d"],
    inputs=["spend_30d", "orders_30d"],
    dtype="float64",
)

churn = FeatureService("churn", features=[customer_stats, spend_per_order])
'''


def init_project(path: Path, *, name: str | None = None) -> Path:
    """Create ``prodml.toml``, ``.prodml/``, ``.gitignore`` and an example ``features.py``
    in ``path``; never overwrite an existing project."""
    root = path.resolve()
    if (root / CONFIG_FILE).exists():
        raise ConflictError(
            f"{root / CONFIG_FILE} already exists; this directory is already a prodml project"
        )
    root.mkdir(parents=True, exist_ok=True)
    project_name = name or re.sub(r"[^A-Za-z0-9_\-]", "_", root.name) or "prodml"
    (root / ".prodml").mkdir(exist_ok=True)
    (root / CONFIG_FILE).write_text(_CONFIG.format(name=project_name), encoding="utf-8")
    gitignore = root / ".gitignore"
    existing = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    if ".prodml/" not in existing:
        gitignore.write_text(
            existing + ("\n" if existing and not existing.endswith("\n") else "") + _GITIGNORE,
            encoding="utf-8",
        )
    features = root / "features.py"
    if not features.exists():
        features.write_text(_FEATURES, encoding="utf-8")
    return root
