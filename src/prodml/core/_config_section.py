"""What every section of ``prodml.toml`` is made of: one base model and the field types
several sections share. Its own module so that ``_config`` and the section modules it
imports (alerts, labels, retraining) use the same base.

>>> class Demo(Section):
...     interval_s: float = 1.0
>>> Demo(interval_s=float("inf"))
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for Demo
interval_s
  Input should be a finite number [type=finite_number, input_value=inf, input_type=float]
...
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["MAX_SPAN", "SPAN_PATTERN", "PathText", "Section"]


class Section(BaseModel):
    """A section: unknown keys refused, frozen, and no inf or NaN (inf passes ``gt=0``
    and then fails where it is used, ``Event.wait(inf)`` overflows; NaN fails every
    comparison: neither is a setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _path_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("expected a path without NUL characters")
    return value


#: A file or directory setting: an empty one would name the project root itself.
PathText = Annotated[str, Field(min_length=1), AfterValidator(_path_text)]
#: A monitoring window or step: a count and its unit (``_config_errors`` explains it).
SPAN_PATTERN = r"^[1-9][0-9]*(h|d|w|mo|rows)$"
#: The longest monitoring window or step: 100 years, in each unit (rows: a bound far
#: past any log, that keeps counts in int64).
MAX_SPAN = {"h": 876_600, "d": 36_525, "w": 5_218, "mo": 1_200, "rows": 10**15}
