"""Training function of the flights demo: will a flight arrive more than 15 minutes late?

Copied into the demo project as ``train.py``. A scikit-learn pipeline (one-hot origin
and carrier, gradient-boosted trees that handle missing weather natively) on the
``flight_delay`` feature service; rows come from ``data/flights.parquet`` by scheduled
departure time, and flights without a label (cancelled, diverted) are left out.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

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
    """Fit the pipeline on the training split (validation split unused: no early stopping)."""
    numeric = [c for c in data.features if c not in CATEGORICAL]
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
    trees = HistGradientBoostingClassifier(
        **data.params, early_stopping=False, random_state=data.seed
    )
    model = Pipeline([("encode", encode), ("trees", trees)])
    return model.fit(data.X_train, data.y_train, trees__sample_weight=data.w_train)
