"""Label jobs: the ``[[labels.jobs]]`` sections of ``prodml.toml``.

A label job computes the labels of one endpoint from the project's data, either with a
DuckDB query (``sql``, over files named relative to the project root) or with a Python
function (``function = "labels.py:late_flights"``, called with the window ``(start,
end)`` and returning a DataFrame or an Arrow table). Its output has ``label`` and/or
``reward``, ``time`` (when the label became known) and, by ``join``, either
``request_id`` (and optionally ``row``) or one column per entity key and
``event_time``. These models do no I/O.

>>> job = LabelJobConfig.model_validate({
...     "name": "late_flights", "endpoint": "flight_delay",
...     "sql": "SELECT flight_id AS request_id, late AS label, landed_at AS time FROM 'f.parquet'"})
>>> job.join, job.function is None
('request_id', True)
>>> LabelsConfig.model_validate({"jobs": [job.model_dump()]}).job("late_flights").endpoint
'flight_delay'
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from prodml.core._config_section import Section as _Section
from prodml.core._ids import NAME_PATTERN
from prodml.core.errors import NotFoundError

__all__ = ["LabelJobConfig", "LabelsConfig"]


class LabelJobConfig(_Section):
    """One label job (see the module docstring): exactly one of ``sql`` and
    ``function``."""

    name: str = Field(pattern=NAME_PATTERN.pattern, description="the job's name")
    endpoint: str = Field(
        pattern=NAME_PATTERN.pattern, description="the endpoint whose predictions it labels"
    )
    sql: str | None = Field(
        default=None,
        min_length=1,
        description="a DuckDB query; relative file names are relative to the project root",
    )
    function: str | None = Field(
        default=None,
        pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
        description='"module.py:function", called with (start, end); the file is relative '
        "to the project root",
    )
    join: Literal["request_id", "entities"] = Field(
        default="request_id",
        description="request_id (and row) columns, or entity key columns and event_time",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.sql is None) == (self.function is None):
            raise ValueError(
                f"label job {self.name!r}: give exactly one of sql and function "
                f'(a DuckDB query, or "module.py:function")'
            )
        return self


class LabelsConfig(_Section):
    """The ``[labels]`` section: the project's label jobs, each name used once."""

    jobs: tuple[LabelJobConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [job.name for job in self.jobs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"labels.jobs: names must be unique; repeated: {repeated}")
        return self

    def job(self, name: str) -> LabelJobConfig:
        """The job called ``name``; :class:`NotFoundError` naming the known jobs otherwise."""
        for job in self.jobs:
            if job.name == name:
                return job
        known = [job.name for job in self.jobs]
        raise NotFoundError(
            f"label job {name!r}: no [[labels.jobs]] of that name in prodml.toml; "
            f"expected one of {known}"
        )
