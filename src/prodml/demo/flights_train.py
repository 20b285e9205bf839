"""Training function of the flights demo: will a flight arrive more than 15 minutes late?

Copied into the demo project as ``train.py``. A scikit-learn pipeline (one-hot origin
and carrier, gradient-boosted trees that handle missing weather natively) on the
``flight_delay`` feature service (all but ``dep_month``, see ``UNUSED``); rows come
from ``data/flights.parquet`` by scheduled departure time, and flights without a label
(cancelled, diverted) are left out.

Warm start (stateful training): given a parent version (``prodml train --parent
flight_delay:3``, or a retraining policy training statefully), the function continues
the parent's trees instead of starting over. When ``data.parent`` is a fitted pipeline
of the same shape (the ``encode`` → ``trees`` steps below, fitted on the same inputs),
a copy of the parent's trees gets ``warm_start=True`` and ``params["warm_start_iter"]``
(default 50) more boosting iterations fitted on the new rows; the parent's one-hot
encoder is kept as it is, so the categories, and the meaning of every column the trees
split on, do not change (a category the parent never saw is ignored, as
``handle_unknown="ignore"`` says). The parent's own hyperparameters stay; the
registered parent model is not modified. Any other parent is ignored: a fresh pipeline
is trained.
"""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import prodml
from prodml.training import TrainingData

FLIGHTS = Path(__file__).resolve().parent / "data" / "flights.parquet"
CATEGORICAL = ["origin", "carrier"]
ROW_COLUMNS = ["flight_id", "origin", "tailnum", "carrier", "sched_dep_time", "sched_dep", "late"]
#: Served features the model does not use: a month the model never saw (each retrain
#: meets the next one) would be scored as the last month it knows, carrying that
#: month's delay level into the new one. Monitoring still watches it drift.
UNUSED = ["dep_month"]
#: Boosting iterations a warm start adds to the parent's (``params["warm_start_iter"]``).
WARM_START_ITER = 50


def flight_rows(start: datetime, end: datetime) -> pa.Table:
    """Labelled flights scheduled to depart in [start, end)."""
    flights = pq.read_table(FLIGHTS, columns=ROW_COLUMNS)
    when = flights["sched_dep"]
    window = pc.and_(
        pc.greater_equal(when, pa.scalar(start, when.type)),
        pc.less(when, pa.scalar(end, when.type)),
    )
    return flights.filter(pc.and_(window, flights["late"].is_valid()))


@prodml.trainer(
    service="flight_delay",
    label="late",
    entity_rows=flight_rows,
    timestamp="sched_dep",
    inputs=CATEGORICAL,
    params={"max_iter": 150, "learning_rate": 0.1, "max_leaf_nodes": 31, "l2_regularization": 1.0},
    seed=13,
)
def train(data: TrainingData) -> Pipeline:
    """Fit the pipeline on the training split (validation split unused: no early
    stopping), or continue the parent's trees when warm-starting."""
    params = {k: v for k, v in data.params.items() if k != "warm_start_iter"}
    extra = int(data.params.get("warm_start_iter", WARM_START_ITER))
    if _same_shape(data.parent, data.features):
        return _warm_start(data, extra)
    numeric = [c for c in data.features if c not in CATEGORICAL and c not in UNUSED]
    encode = ColumnTransformer(
        [
            (
                "categories",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                CATEGORICAL,
            ),
            ("numbers", "passthrough", numeric),
        ]
    )
    trees = HistGradientBoostingClassifier(**params, early_stopping=False, random_state=data.seed)
    model = Pipeline([("encode", encode), ("trees", trees)])
    return model.fit(data.X_train, data.y_train, trees__sample_weight=data.w_train)


def _same_shape(parent: Any, features: list[str]) -> bool:
    """Whether ``parent`` is a fitted encode → trees pipeline on the same inputs."""
    if not isinstance(parent, Pipeline) or list(parent.named_steps) != ["encode", "trees"]:
        return False
    encode, trees = parent.named_steps["encode"], parent.named_steps["trees"]
    return (
        isinstance(encode, ColumnTransformer)
        and isinstance(trees, HistGradientBoostingClassifier)
        and hasattr(trees, "n_iter_")
        and list(getattr(encode, "feature_names_in_", [])) == list(features)
    )


def _warm_start(data: TrainingData, extra: int) -> Pipeline:
    """The parent's encoder as it is, and a copy of its trees boosted ``extra`` more
    iterations on the new rows."""
    if extra < 1:
        raise ValueError(f"params['warm_start_iter'] is {extra}; expected at least 1")
    parent: Pipeline = data.parent
    encode = copy.deepcopy(parent.named_steps["encode"])
    trees = copy.deepcopy(parent.named_steps["trees"])
    trees.set_params(warm_start=True, max_iter=trees.n_iter_ + extra)
    trees.fit(encode.transform(data.X_train), data.y_train, sample_weight=data.w_train)
    return Pipeline([("encode", encode), ("trees", trees)])
