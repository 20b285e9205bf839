"""The result of validating a batch: violations per column, with counts and examples.

>>> v = Violation(column="delay", kind="out_of_range", severity="warning", count=2,
...               fraction=0.5, examples=[-999.0, 5000.0], rows=[1, 3],
...               message="column 'delay': out_of_range, expected values in [0.0, 10.0]")
>>> report = ValidationReport(row_count=4, violations=[v])
>>> report.ok, len(report.warnings), len(report.errors)
(True, 1, 0)
>>> print(report.summary())
passed with 1 warning over 4 rows
  warning  column 'delay': out_of_range, expected values in [0.0, 10.0]; 2 rows (50%), e.g. row 1: -999.0, row 3: 5000.0
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodml.core.errors import DataValidationError
from prodml.validation._expectations import Severity, ViolationKind
from prodml.validation._profile import Scalar

__all__ = ["ValidationReport", "Violation"]


class Violation(BaseModel):
    """One column breaking one expectation in a batch.

    ``count`` rows broke it (all rows for schema violations), ``fraction`` is their share
    of the batch; ``examples`` holds up to five offending values and ``rows`` their row
    indices in the batch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    kind: ViolationKind
    severity: Severity
    count: int = Field(ge=0)
    fraction: float = Field(ge=0.0, le=1.0)
    examples: list[Scalar] = Field(default_factory=list)
    rows: list[int] = Field(default_factory=list)
    message: str


class ValidationReport(BaseModel):
    """All violations found in one batch; ``ok`` when none has severity ``error``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    row_count: int = Field(ge=0)
    violations: list[Violation] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no violation has severity ``error``."""
        return not self.errors

    @property
    def errors(self) -> list[Violation]:
        """Violations with severity ``error``."""
        return [v for v in self.violations if v.severity == "error"]

    @property
    def warnings(self) -> list[Violation]:
        """Violations with severity ``warning``."""
        return [v for v in self.violations if v.severity == "warning"]

    def summary(self) -> str:
        """Human-readable text: a verdict line, then one line per violation."""
        errors, warnings = len(self.errors), len(self.warnings)
        verdict = "passed" if self.ok else "failed"
        counts = [_plural(errors, "error"), _plural(warnings, "warning")]
        found = " and ".join(text for text, n in zip(counts, (errors, warnings), strict=True) if n)
        head = f"{verdict} with {found or 'no violations'} over {_plural(self.row_count, 'row')}"
        return "\n".join([head, *(_line(v) for v in self.violations)])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the report, with ``ok`` included."""
        return {"ok": self.ok, **self.model_dump(mode="json")}

    def raise_for_errors(self) -> None:
        """Raise :class:`~prodml.core.errors.DataValidationError` carrying this report
        when it holds an error-severity violation."""
        if not self.ok:
            raise DataValidationError(self.summary(), report=self)


def _line(violation: Violation) -> str:
    text = f"  {violation.severity:<8} {violation.message}"
    if violation.kind in ("missing_column", "wrong_type", "extra_column"):
        return text
    text += f"; {_plural(violation.count, 'row')} ({violation.fraction * 100:.3g}%)"
    if violation.rows:
        shown = ", ".join(
            f"row {row}: {value!r}"
            for row, value in zip(violation.rows, violation.examples, strict=True)
        )
        text += f", e.g. {shown}"
    return text


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
