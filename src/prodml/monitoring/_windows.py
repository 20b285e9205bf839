"""Monitoring windows: fixed, calendar-aligned time spans over the prediction log.

A length is ``<n>h``, ``<n>d``, ``<n>w`` or ``<n>mo``. Tumbling windows tile time from
an aligned origin (the UTC hour, midnight, Monday or first of the month at or before the
first record); a ``step`` shorter than the length makes them slide. Only *closed*
windows are produced — those ending at or before ``until`` — so each is computed once.

>>> from datetime import datetime, UTC
>>> t = lambda *a: datetime(*a, tzinfo=UTC)
>>> [w.label for w in windows(Span.parse("1mo"), t(2013, 1, 15), t(2013, 4, 2))]
['2013-01', '2013-02', '2013-03']
>>> [w.label for w in windows(Span.parse("1d"), t(2013, 1, 1, 5), t(2013, 1, 3, 1))]
['2013-01-01', '2013-01-02']
>>> [(w.start.day, w.end.day) for w in windows(Span.parse("2d"), t(2013, 1, 1), t(2013, 1, 5),
...                                              step=Span.parse("1d"))]
[(1, 3), (2, 4), (3, 5)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prodml.core import ensure_utc
from prodml.core.errors import ConfigError

__all__ = ["Span", "Window", "window_at", "windows"]

_SPAN = re.compile(r"^([1-9][0-9]*)(h|d|w|mo)$")


@dataclass(frozen=True)
class Span:
    """A window length: ``count`` hours, days, weeks or calendar months."""

    count: int
    unit: str

    @classmethod
    def parse(cls, text: str, *, field: str = "window") -> Span:
        match = _SPAN.fullmatch(text.strip())
        if not match:
            raise ConfigError(
                f"{field}: {text!r} is not a window length; expected <n>h, d, w or mo"
            )
        return cls(int(match.group(1)), match.group(2))

    def floor(self, moment: datetime) -> datetime:
        """The aligned origin at or before ``moment``."""
        t = ensure_utc(moment)
        if self.unit == "h":
            return t.replace(minute=0, second=0, microsecond=0)
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.unit == "d":
            return day
        if self.unit == "w":
            return day - timedelta(days=day.weekday())
        return day.replace(day=1)

    def add(self, moment: datetime, times: int = 1) -> datetime:
        """``moment`` moved forward by ``times`` spans."""
        n = self.count * times
        if self.unit == "h":
            return moment + timedelta(hours=n)
        if self.unit == "d":
            return moment + timedelta(days=n)
        if self.unit == "w":
            return moment + timedelta(weeks=n)
        months = moment.month - 1 + n
        return moment.replace(year=moment.year + months // 12, month=months % 12 + 1)

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass(frozen=True, order=True)
class Window:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """A short name: the month, the day or the start hour when it is one of those."""
        length = self.end - self.start
        if self.start.day == 1 and self.start.hour == 0 and 28 <= length.days <= 31:
            return f"{self.start:%Y-%m}"
        if length == timedelta(days=1) and self.start.hour == 0:
            return f"{self.start:%Y-%m-%d}"
        return f"{self.start:%Y-%m-%dT%H:%M}/{self.end:%Y-%m-%dT%H:%M}"


def windows(
    span: Span, first: datetime, until: datetime, *, step: Span | None = None
) -> list[Window]:
    """Closed windows of length ``span`` (every ``step``, default: tumbling) that start
    at or after the aligned origin of ``first`` and end at or before ``until``."""
    until = ensure_utc(until)
    out: list[Window] = []
    while (window := window_at(span, first, len(out), step=step)).end <= until:
        out.append(window)
    return out


def window_at(span: Span, first: datetime, index: int, *, step: Span | None = None) -> Window:
    """The ``index``-th window (from 0) of :func:`windows`' layout: with ``index`` the
    number of closed windows, the next one to close.

    >>> from datetime import datetime, UTC
    >>> window_at(Span.parse("1d"), datetime(2013, 1, 1, 5, tzinfo=UTC), 2).label
    '2013-01-03'
    """
    stride = step or span
    start = stride.add(stride.floor(first), index)
    return Window(start.astimezone(UTC), span.add(start).astimezone(UTC))
