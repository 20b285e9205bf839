"""Clocks: the only way prodml code reads the time.

>>> from datetime import datetime, timedelta, timezone
>>> clock = SimulatedClock(datetime(2013, 1, 1, tzinfo=timezone.utc))
>>> clock.advance(timedelta(hours=2)).isoformat()
'2013-01-01T02:00:00+00:00'
>>> clock.now().isoformat()
'2013-01-01T02:00:00+00:00'
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SimulatedClock", "SystemClock", "ensure_utc"]


def ensure_utc(value: datetime, *, name: str = "time") -> datetime:
    """Return ``value`` as a timezone-aware UTC datetime; naive values are taken as UTC.

    >>> ensure_utc(datetime(2013, 1, 1)).isoformat()
    '2013-01-01T00:00:00+00:00'
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    """Source of the current time (timezone-aware, UTC)."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class SimulatedClock:
    """A clock that moves only when told to; used by the demo replay and by tests."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)
        self._lock = threading.Lock()
        self._origin = self._now

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return (self._now - self._origin).total_seconds()

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` (never backwards) and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"SimulatedClock.advance: delta must be >= 0, got {delta}")
        with self._lock:
            self._now = self._now + delta
            return self._now

    def set(self, value: datetime) -> datetime:
        """Jump to ``value``, which must not be earlier than the current time."""
        value = ensure_utc(value)
        with self._lock:
            if value < self._now:
                raise ValueError(
                    f"SimulatedClock.set: time must not go backwards "
                    f"(now {self._now.isoformat()}, got {value.isoformat()})"
                )
            self._now = value
            return self._now
