"""Template filters: numbers, rates, times and evidence as the pages show them (a
missing or non-finite value is an em dash, never "nan").

>>> FILTERS["num"](0.123456), FILTERS["pct"](0.0512), FILTERS["num"](float("nan"))
('0.1235', '5.12%', '—')
>>> FILTERS["count"](1234567)
'1,234,567'
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from prodml.core import ensure_utc

__all__ = ["FILTERS"]

_DASH = "—"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 4) -> str:
    if not _finite(value):
        return _DASH
    return f"{value:.{digits}g}" if abs(value) >= 10**digits else f"{value:.{digits}f}"


def pct(value: Any, digits: int = 2) -> str:
    return f"{value * 100:.{digits}f}%" if _finite(value) else _DASH


def ms(value: Any) -> str:
    return f"{value:.1f} ms" if _finite(value) else _DASH


def count(value: Any) -> str:
    return f"{int(value):,}" if _finite(value) else _DASH


def when(value: Any) -> str:
    """A time as ``YYYY-MM-DD HH:MM UTC`` (ISO text accepted)."""
    if value is None or value == "":
        return _DASH
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, datetime):
        return str(value)
    return ensure_utc(value).strftime("%Y-%m-%d %H:%M UTC")


def hours(value: Any) -> str:
    """A duration given in hours, in hours below two days, else in days.

    >>> hours(5.25), hours(100.0)
    ('5.2 h', '4.2 d')
    """
    if not _finite(value):
        return _DASH
    return f"{value:.1f} h" if abs(value) < 48 else f"{value / 24:,.1f} d"


def pretty(value: Any) -> str:
    """Evidence as indented JSON."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


FILTERS: dict[str, Callable[..., str]] = {
    "num": num, "pct": pct, "ms": ms, "count": count, "when": when, "pretty": pretty,
    "hours": hours,
}  # fmt: skip
