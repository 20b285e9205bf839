"""The first step of a retrain job: are the window's rows fit to train on? The
project's trainer must register the policy's ``model`` (else the job would train,
approve and hand over a version of another model); the rows of the trainer's
``entity_rows`` in the window must exist, carry the label column, and hold at least the
policy's ``min_rows`` labelled rows (a null or NaN label is none); the training set the
job then builds validates the features themselves (``[features] on_violation``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import ConfigError, DataValidationError
from prodml.core._retraining_config import RetrainPolicyConfig
from prodml.training import Training, load_entity_rows

__all__ = ["validate_window"]


def validate_window(
    training: Training, policy: RetrainPolicyConfig, start: datetime, end: datetime
) -> dict[str, Any]:
    """What the window holds (rows, labelled rows, the label's mean); a
    :class:`DataValidationError` naming the policy and what is missing otherwise (a
    :class:`ConfigError` when the trainer registers another model than the policy's)."""
    spec = training.trainer()
    if spec.name != policy.model:
        raise ConfigError(
            f"retraining policy {policy.name!r}: model {policy.model!r} is not the model the "
            f"project's trainer {spec.qualname} registers; expected model = {spec.name!r}"
        )
    rows = load_entity_rows(
        spec.entity_rows, root=training.root, timestamp=spec.timestamp, start=start, end=end,
        owner=f"trainer {spec.qualname}",
    )  # fmt: skip
    where = f"retraining policy {policy.name!r}, window [{start:%Y-%m-%d}, {end:%Y-%m-%d})"
    if spec.label not in rows.column_names:
        raise DataValidationError(
            f"{where}: the rows have no label column {spec.label!r}; columns: {rows.column_names}"
        )
    labels = rows[spec.label]
    if pa.types.is_floating(labels.type):  # a NaN label is no label (null for Arrow)
        labels = pc.if_else(pc.is_nan(labels), pa.scalar(None, labels.type), labels)
    labelled = len(labels) - labels.null_count
    if labelled < policy.min_rows:
        raise DataValidationError(
            f"{where}: {labelled} labelled rows of {rows.num_rows}; expected at least "
            f"min_rows = {policy.min_rows}"
        )
    mean = None
    if labelled and (
        labels.type == "bool" or str(labels.type).startswith(("int", "double", "float"))
    ):
        mean = pc.mean(pc.cast(labels, "float64")).as_py()
    return {"rows": rows.num_rows, "labelled": labelled, "label_mean": mean}
