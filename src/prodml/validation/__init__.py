"""Layer 2, data contracts: profile a table, infer its expectations, validate batches
and single rows against them.

>>> import pyarrow as pa
>>> reference = pa.table({"carrier": ["AA", "UA", "AA"], "delay": [3.0, -2.0, 40.0]})
>>> expectations = infer_expectations(profile(reference))
>>> validate(reference, expectations).ok
True
>>> report = validate(pa.table({"carrier": ["ZZ", "AA"], "delay": [1.0, None]}), expectations)
>>> [(v.column, v.kind, v.severity, v.count) for v in report.violations]
[('carrier', 'unseen_category', 'warning', 1), ('delay', 'null_rate', 'error', 1)]
>>> RowValidator(expectations).check({"carrier": "UA", "delay": 12.5})
[]
"""

from __future__ import annotations

from prodml.validation._expectations import (
    CategoryExpectation,
    ColumnExpectation,
    Expectations,
    FiniteExpectation,
    NullExpectation,
    PatternExpectation,
    RangeExpectation,
    Severity,
    ViolationKind,
)
from prodml.validation._infer import infer_expectations, infer_pattern
from prodml.validation._profile import QUANTILES, CategoryCount, ColumnProfile, Profile
from prodml.validation._profiler import profile
from prodml.validation._report import ValidationReport, Violation
from prodml.validation._row import RowValidator, RowViolation
from prodml.validation._validate import validate

__all__ = [
    "QUANTILES",
    "CategoryCount",
    "CategoryExpectation",
    "ColumnExpectation",
    "ColumnProfile",
    "Expectations",
    "FiniteExpectation",
    "NullExpectation",
    "PatternExpectation",
    "Profile",
    "RangeExpectation",
    "RowValidator",
    "RowViolation",
    "Severity",
    "ValidationReport",
    "Violation",
    "ViolationKind",
    "infer_expectations",
    "infer_pattern",
    "profile",
    "validate",
]
