"""Search runs by metric: ``where="roc_auc >= 0.7 and log_loss < 0.5"``, ordered by a
metric, answered by the database from the latest-metric index (not by loading runs).

>>> parse_conditions("roc_auc >= 0.7 and log_loss<0.5")
[('roc_auc', '>=', 0.7), ('log_loss', '<', 0.5)]
>>> parse_order("roc_auc desc")
('roc_auc', False)
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import aliased

from prodml.core import DefinitionError
from prodml.storage._models import RunLatestMetricRow, RunRow

__all__ = ["parse_conditions", "parse_order", "search_query"]

_CONDITION = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_./\-]*)\s*(>=|<=|==|!=|>|<|=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_OPS: dict[str, Any] = {
    ">=": lambda c, v: c >= v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    "<": lambda c, v: c < v,
    "=": lambda c, v: c == v,
    "==": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
}


def parse_conditions(where: str) -> list[tuple[str, str, float]]:
    """``metric op number`` clauses joined by ``and``."""
    out = []
    for clause in re.split(r"\s+and\s+", where.strip(), flags=re.IGNORECASE):
        match = _CONDITION.fullmatch(clause)
        if match is None:
            raise DefinitionError(
                f"run search condition {clause!r}: expected 'metric OP number' with OP one "
                "of >= <= > < = !=, clauses joined by 'and'"
            )
        out.append((match[1], match[2], float(match[3])))
    return out


def parse_order(order_by: str) -> tuple[str, bool]:
    """``metric [asc|desc]`` → (metric, ascending)."""
    parts = order_by.split()
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in {"asc", "desc"}):
        raise DefinitionError(f"run search order {order_by!r}: expected 'metric [asc|desc]'")
    return parts[0], len(parts) == 1 or parts[1].lower() == "asc"


def search_query(
    *,
    model_name: str | None,
    where: str | None,
    order_by: str | None,
    status: str | None,
    limit: int,
) -> Select[RunRow]:
    query = select(RunRow)
    if model_name is not None:
        query = query.where(RunRow.model_name == model_name)
    if status is not None:
        query = query.where(RunRow.status == status)
    for key, op, value in parse_conditions(where) if where else []:
        metric = aliased(RunLatestMetricRow)
        query = query.join(metric, (metric.run_id == RunRow.id) & (metric.key == key)).where(
            _OPS[op](metric.value, value)
        )
    if order_by:
        key, ascending = parse_order(order_by)
        metric = aliased(RunLatestMetricRow)
        query = query.outerjoin(metric, (metric.run_id == RunRow.id) & (metric.key == key))
        column = metric.value.asc() if ascending else metric.value.desc()
        query = query.order_by(column.nulls_last(), RunRow.id)
    else:
        query = query.order_by(RunRow.start_time.desc(), RunRow.id.desc())
    return query.limit(limit)
