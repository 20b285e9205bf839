"""Conversions of Arrow values into JSON scalars for profiles and reports, and the
parsing of JSON documents into models with errors that name the source and field.

>>> import datetime as dt
>>> jsonable(dt.datetime(2013, 1, 1, 5, tzinfo=dt.timezone.utc))
'2013-01-01T05:00:00+00:00'
>>> jsonable(float("nan")), jsonable(float("-inf")), jsonable(2.5)
('nan', '-inf', 2.5)
>>> iso_instant(0, "s", aware=True), iso_instant(86400, "s", aware=False)
('1970-01-01T00:00:00Z', '1970-01-02T00:00:00')
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from prodml.core.errors import DefinitionError

__all__ = ["iso_instant", "jsonable", "parse_model"]

_Model = TypeVar("_Model", bound=BaseModel)
_MAX_ERRORS = 5


def jsonable(value: Any) -> bool | int | float | str | None:
    """A JSON scalar for a Python value from ``Scalar.as_py()``; non-finite floats and
    other non-JSON values become strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def iso_instant(value: int, unit: str, *, aware: bool) -> str:
    """ISO-8601 text of an epoch offset in ``unit`` (``s``, ``ms``, ``us``, ``ns``, ``D``);
    timezone-aware instants are written in UTC with a ``Z``."""
    instant: Any = np.datetime64(int(value), unit)  # type: ignore[call-overload]
    text = str(np.datetime_as_string(instant))
    return text + "Z" if aware else text


def parse_model(model: type[_Model], text: str | bytes, *, source: str) -> _Model:
    """Validate JSON ``text`` as ``model``; on failure raise :class:`DefinitionError`
    naming ``source`` and each offending field (dotted path) with what was expected."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:_MAX_ERRORS]:
            field = ".".join(str(part) for part in error["loc"]) or "(document)"
            problems.append(f"{field}: {error['msg']}")
        more = exc.error_count() - _MAX_ERRORS
        if more > 0:
            problems.append(f"… and {more} more")
        raise DefinitionError(
            f"{source} is not a valid {model.__name__}: " + "; ".join(problems)
        ) from exc
