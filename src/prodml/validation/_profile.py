"""The profile of a table: what its columns held, as a JSON round-trippable record.

A profile is the reference that expectations are inferred from and that monitoring
compares later windows against; it is computed by :func:`prodml.validation.profile`.

>>> col = ColumnProfile(dtype="float64", count=3, null_count=1, null_rate=0.25, min=0.5)
>>> p = Profile(row_count=4, columns={"x": col})
>>> Profile.from_json(p.to_json()) == p
True
>>> p.column("x").min
0.5
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prodml.core.errors import SchemaError
from prodml.validation._values import parse_model

__all__ = ["QUANTILES", "CategoryCount", "CharClass", "ColumnProfile", "Profile", "Scalar"]

#: Quantile labels and levels reported for numeric and temporal columns.
QUANTILES: dict[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}

#: A JSON scalar as stored in profiles and reports; timestamps and dates are ISO-8601.
Scalar = bool | int | float | str | None

#: Character classes seen in a string column: ASCII upper, lower, digit, anything else.
CharClass = Literal["digit", "lower", "other", "upper"]


class CategoryCount(BaseModel):
    """One value of a string or boolean column and how many rows held it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: bool | str
    count: int


class ColumnProfile(BaseModel):
    """Statistics of one column.

    ``count`` is the number of non-null values, ``null_rate`` the share of null rows.
    For floats, NaN and ±inf are counted in ``nan_count`` / ``inf_count`` and left out
    of ``min``, ``max``, ``mean``, ``std`` and ``quantiles``. ``std`` is the sample
    standard deviation (ddof=1). ``distinct_count`` counts distinct non-null values
    (all NaNs count as one). ``categories`` lists every distinct value of a string
    column when there are few enough of them (see ``profile(category_limit=…)``);
    ``char_classes`` are the character classes found across all its values.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: str
    count: int
    null_count: int
    null_rate: float
    nan_count: int = 0
    inf_count: int = 0
    distinct_count: int | None = None
    min: Scalar = None
    max: Scalar = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float | str] | None = None
    top_categories: list[CategoryCount] | None = None
    categories: list[str] | None = None
    min_length: int | None = None
    max_length: int | None = None
    char_classes: list[CharClass] | None = None


class Profile(BaseModel):
    """Column profiles of one table, in column order, with its row count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row_count: int = Field(ge=0)
    columns: dict[str, ColumnProfile]

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``; raises :class:`SchemaError` naming it."""
        try:
            return self.columns[name]
        except KeyError:
            known = ", ".join(self.columns) or "none"
            raise SchemaError(f"profile has no column {name!r}: expected one of {known}") from None

    def to_json(self, *, indent: int | None = None) -> str:
        """The profile as JSON text (read it back with :meth:`from_json`)."""
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "profile JSON") -> Profile:
        """A profile from the JSON written by :meth:`to_json`; raises
        :class:`~prodml.core.errors.DefinitionError` naming ``source`` and each invalid field."""
        return parse_model(cls, text, source=source)
