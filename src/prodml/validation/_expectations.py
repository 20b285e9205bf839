"""Expectations: the data contract of a table, editable as a JSON file.

Each column may declare its dtype and whether it is required (schema), whether nulls
are allowed and how many (``nulls``), that floats be finite (``finite``), a numeric
``range``, the allowed ``categories`` and a ``pattern`` every string must match whole.
Each check carries its own ``severity``: an ``error`` fails a report, a ``warning``
only notes it. Absent checks are not made.

>>> exp = Expectations(columns={
...     "carrier": ColumnExpectation(dtype="string", pattern=PatternExpectation(regex="^[A-Z0-9]{2}$")),
...     "delay": ColumnExpectation(dtype="float64", range=RangeExpectation(min=-60, max=1500)),
... })
>>> Expectations.from_json(exp.to_json()) == exp
True
>>> exp.columns["delay"].range.severity, exp.columns["carrier"].severity
('warning', 'error')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prodml.core._types import DTYPES, arrow_type, dtype_name
from prodml.core.errors import NotFoundError, ProdMLError, StorageError
from prodml.validation._values import parse_model

__all__ = [
    "FLOAT_DTYPES",
    "NUMERIC_DTYPES",
    "CategoryExpectation",
    "ColumnExpectation",
    "Expectations",
    "FiniteExpectation",
    "NullExpectation",
    "PatternExpectation",
    "RangeExpectation",
    "Severity",
    "ViolationKind",
    "anchored",
    "compile_pattern",
]

Severity = Literal["error", "warning"]
ViolationKind = Literal[
    "missing_column",
    "wrong_type",
    "null_rate",
    "non_finite",
    "out_of_range",
    "unseen_category",
    "pattern_mismatch",
    "extra_column",
    "missing_entity",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)
FLOAT_DTYPES = frozenset({"float32", "float64"})
NUMERIC_DTYPES = FLOAT_DTYPES | {"int8", "int16", "int32", "int64"}


def compile_pattern(regex: str) -> re.Pattern[str]:
    """Compile ``regex`` for both engines: Python ``re`` with ASCII classes (the row
    check) and RE2 (Arrow, the batch check); raise ``ValueError`` if either rejects it.

    >>> compile_pattern("[A-Z]{2}").fullmatch("AA") is not None
    True
    """
    try:
        compiled = re.compile(regex, re.ASCII)
    except re.error as exc:
        raise ValueError(f"regex {regex!r} does not compile: {exc}") from exc
    try:
        pc.match_substring_regex(pa.array(["", "a"]), anchored(regex))
    except pa.ArrowInvalid as exc:
        raise ValueError(f"regex {regex!r} is rejected by RE2, the batch engine: {exc}") from exc
    return compiled


def anchored(regex: str) -> str:
    """``regex`` wrapped so that RE2 must match the whole string."""
    return f"^(?:{regex})$"


class NullExpectation(BaseModel):
    """Nulls: when ``nullable`` is false any null is a violation; otherwise a batch of at
    least ``Expectations.min_rows_for_rates`` rows may hold at most ``max_rate`` nulls."""

    model_config = _STRICT

    nullable: bool = True
    max_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    severity: Severity = "error"


class FiniteExpectation(BaseModel):
    """Float values must be finite: NaN and ±inf are violations (``non_finite``)."""

    model_config = _STRICT

    severity: Severity = "error"


class RangeExpectation(BaseModel):
    """Finite numeric values must lie in ``[min, max]``; either bound may be left open.
    NaN and ±inf are never out of range: :class:`FiniteExpectation` covers them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min: int | float | None = None
    max: int | float | None = None
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _ordered(self) -> RangeExpectation:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class CategoryExpectation(BaseModel):
    """String values must be one of ``values``."""

    model_config = _STRICT

    values: list[str] = Field(min_length=1)
    severity: Severity = "warning"


class PatternExpectation(BaseModel):
    """Every string value must match ``regex`` as a whole (anchors are optional); use the
    syntax shared by Python ``re`` and RE2 — ``\\d``, ``\\w`` and ``\\s`` are ASCII."""

    model_config = _STRICT

    regex: str = Field(min_length=1)
    severity: Severity = "warning"

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        compile_pattern(regex)
        return regex


class ColumnExpectation(BaseModel):
    """What one column must hold; ``dtype`` None accepts any type. ``severity`` applies
    to the schema checks (``missing_column`` when ``required``, ``wrong_type``)."""

    model_config = _STRICT

    dtype: str | None = None
    required: bool = True
    severity: Severity = "error"
    nulls: NullExpectation | None = None
    finite: FiniteExpectation | None = None
    range: RangeExpectation | None = None
    categories: CategoryExpectation | None = None
    pattern: PatternExpectation | None = None

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, dtype: str | None) -> str | None:
        if dtype is None:
            return None
        try:
            return dtype_name(arrow_type(dtype))
        except ProdMLError:
            raise ValueError(
                f"dtype {dtype!r} is unknown: expected one of {', '.join(sorted(DTYPES))}"
            ) from None

    @model_validator(mode="after")
    def _checks_fit_dtype(self) -> ColumnExpectation:
        if self.dtype is None:
            return self
        fits = {
            "range": self.dtype in NUMERIC_DTYPES,
            "finite": self.dtype in FLOAT_DTYPES,
            "categories": self.dtype == "string",
            "pattern": self.dtype == "string",
        }
        for check, ok in fits.items():
            if getattr(self, check) is not None and not ok:
                raise ValueError(f"a {check} check does not apply to dtype {self.dtype!r}")
        return self


class Expectations(BaseModel):
    """Expectations for every known column of a table, plus table-wide rules.

    ``extra_columns="forbid"`` makes each column not named in ``columns`` an
    error-severity ``extra_column`` violation. Null-rate bounds are judged only on
    batches of at least ``min_rows_for_rates`` rows (smaller samples say too little).
    """

    model_config = _STRICT

    version: Literal[1] = 1
    columns: dict[str, ColumnExpectation]
    extra_columns: Literal["allow", "forbid"] = "allow"
    min_rows_for_rates: int = Field(default=100, ge=1)

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text; absent checks are left out so that the file stays short."""
        return self.model_dump_json(indent=indent, exclude_none=True)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "expectations JSON") -> Expectations:
        """Expectations from JSON; raises :class:`~prodml.core.errors.DefinitionError`
        naming ``source`` and each invalid field."""
        return parse_model(cls, text, source=source)

    def save(self, path: str | Path) -> None:
        """Write the expectations to ``path`` as indented JSON."""
        target = Path(path)
        try:
            target.write_text(self.to_json() + "\n", encoding="utf-8")
        except OSError as exc:
            raise StorageError(
                f"expectations file {str(target)!r} could not be written: {exc}"
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> Expectations:
        """Read expectations saved by :meth:`save` (or written by hand)."""
        source = Path(path)
        try:
            text = source.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(
                f"expectations file {str(source)!r} does not exist: expected a JSON file"
            ) from None
        except OSError as exc:
            raise StorageError(
                f"expectations file {str(source)!r} could not be read: {exc}"
            ) from exc
        return parse_model(cls, text, source=f"expectations file {str(source)!r}")
