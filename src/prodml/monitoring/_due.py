"""Which windows of an endpoint's prediction log a pass computes, and why the records
after them wait.

A time window (``window = "1d"``, ``"1h"``, ``"1w"``, ``"1mo"``; ``step`` for sliding
ones) is due once it has closed and ``grace`` has passed, so that log flushes still in
flight are in. A row-count window (``window = "500rows"``) holds that many live
predictions and closes at the first live prediction after them; it too is due ``grace``
after that record. A pass that computes nothing says why with a :class:`Backlog`:
"1,400 records wait for the grace period (5m) until …".
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import MonitoringConfig, ensure_utc, parse_duration
from prodml.core.errors import SchemaError
from prodml.monitoring._windows import Span, Window, window_at, windows
from prodml.storage import LogStore, QuarantinedFile

__all__ = ["Backlog", "Schedule"]

Reason = Literal["no_records", "open_window", "grace", "rows"]


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment.second else f"{moment:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class Backlog:
    """What waits on one endpoint after a pass: ``records`` not yet in a due window, the
    ``window`` they wait for and when it is due (``due_at``); ``computed_until`` is the
    end of the last window computed. ``reason``: ``no_records`` (nothing logged),
    ``open_window`` (the next window has not closed), ``grace`` (it closed, ``grace``
    has not passed), ``rows`` (a row-count window needs ``needed`` more predictions)."""

    endpoint: str
    reason: Reason
    records: int = 0
    window: Window | None = None
    due_at: datetime | None = None
    computed_until: datetime | None = None
    grace: str = ""
    rows: int = 0
    needed: int = 0

    @property
    def message(self) -> str:
        """One line for people, e.g. "flights: 1,400 records wait for the grace period
        (5m) until 2026-03-06 00:05 UTC: window 2026-03-05 closed at …"."""
        head = f"{self.endpoint}: "
        if self.reason == "no_records":
            return head + "no records in the prediction log"
        if self.computed_until is not None:
            head += f"every window up to {_when(self.computed_until)} is computed; "
        noun = "live predictions" if self.rows else "records"
        if self.reason == "rows":
            return head + (
                f"{self.records:,} {noun} wait for a window of {self.rows:,} (it closes at the "
                f"first prediction after it: {self.needed:,} more)"
            )
        assert self.window is not None  # set for the other reasons
        assert self.due_at is not None
        name = f"a window of {self.rows:,}" if self.rows else f"window {self.window.label}"
        if self.reason == "grace":
            return head + (
                f"{self.records:,} {noun} wait for the grace period ({self.grace}) until "
                f"{_when(self.due_at)}: {name} closed at {_when(self.window.end)}"
            )
        return head + (
            f"{self.records:,} {noun} wait for {name}, which closes at "
            f"{_when(self.window.end)} (computed from {_when(self.due_at)}, after the grace "
            f"period {self.grace})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "reason": self.reason,
            "records": self.records,
            "window": None
            if self.window is None
            else {"start": self.window.start.isoformat(), "end": self.window.end.isoformat()},
            "due_at": None if self.due_at is None else self.due_at.isoformat(),
            "computed_until": None
            if self.computed_until is None
            else self.computed_until.isoformat(),
            "grace": self.grace,
            "rows": self.rows or None,
            "needed": self.needed or None,
            "message": self.message,
        }


@dataclass(frozen=True)
class Schedule:
    """The windows of ``[monitoring]``: ``span`` and ``step`` of time windows, or
    ``rows`` and ``row_step`` of row-count windows, and ``grace``."""

    span: Span
    step: Span | None
    grace: timedelta
    grace_text: str
    rows: int = 0
    row_step: int = 0

    @classmethod
    def of(cls, config: MonitoringConfig) -> Schedule:
        rows, row_step = _row_windows(config)
        return cls(
            span=Span.parse("1d" if rows else config.window, field="monitoring.window"),
            step=None
            if config.step is None or rows
            else Span.parse(config.step, field="monitoring.step"),
            grace=parse_duration(config.grace, field="monitoring.grace"),
            grace_text=config.grace,
            rows=rows,
            row_step=row_step,
        )

    def due(
        self,
        log: LogStore,
        endpoint: str,
        now: datetime,
        done: set[tuple[datetime, datetime]],
        quarantine: list[QuarantinedFile] | None = None,
    ) -> tuple[list[Window], Backlog]:
        """The windows of ``endpoint`` (in the prediction log ``log``) due at ``now`` and
        not in ``done``, and what waits after them (unreadable files: moved to
        ``quarantine``, see :meth:`~prodml.storage.LogStore.read`)."""
        first = log.first_hour(endpoint)
        if first is None:
            return [], Backlog(endpoint, "no_records")
        if self.rows:
            closed, backlog = self._row_windows(log, endpoint, now, quarantine)
        else:
            closed = windows(self.span, first, now - self.grace, step=self.step)
            upcoming = window_at(self.span, first, len(closed), step=self.step)
            waiting = log.read(endpoint=endpoint, start=upcoming.start, columns=["time"],
                               quarantine=quarantine)  # fmt: skip
            reason: Reason = "grace" if upcoming.end <= now else "open_window"
            backlog = Backlog(endpoint, reason, waiting.num_rows, upcoming,
                              upcoming.end + self.grace, grace=self.grace_text)  # fmt: skip
        ends = [end for _, end in done] + [w.end for w in closed]
        until = max(ends, default=None)
        due = [w for w in closed if (w.start, w.end) not in done]
        return due, replace(backlog, computed_until=until)

    def _row_windows(
        self,
        log: LogStore,
        endpoint: str,
        now: datetime,
        quarantine: list[QuarantinedFile] | None,
    ) -> tuple[list[Window], Backlog]:
        """Windows of ``rows`` live predictions every ``row_step``: from the time of a
        window's first record to the time of the first record after it (records sharing
        that time go to the next window), closed once that record is ``grace`` old."""
        table = log.read(
            endpoint=endpoint, end=now, columns=["time", "shadow"], quarantine=quarantine
        )
        live = table.filter(pc.invert(pc.fill_null(pc.cast(table["shadow"], pa.bool_()), False)))
        times = [ensure_utc(t) for t in live["time"].to_pylist()]
        settled = bisect.bisect_left(times, now - self.grace)
        out = []
        begins = range(0, max(settled - self.rows, 0), self.row_step)
        for begin in begins:
            start, end = times[begin], times[begin + self.rows]
            if end > start:
                out.append(Window(start, end))
        following = len(begins) * self.row_step
        waiting = len(times) - following
        base = Backlog(endpoint, "rows", waiting, grace=self.grace_text, rows=self.rows)
        if waiting <= self.rows:
            return out, replace(base, needed=self.rows + 1 - waiting)
        window = Window(times[following], times[following + self.rows])
        return out, replace(base, reason="grace", window=window, due_at=window.end + self.grace)


def _row_windows(config: MonitoringConfig) -> tuple[int, int]:
    """(rows, step) of count windows, or (0, 0) for time windows."""
    if not config.window.endswith("rows"):
        if config.step is not None and config.step.endswith("rows"):
            raise SchemaError(f"monitoring.step {config.step!r}: a time window needs a time step")
        return 0, 0
    rows = int(config.window.removesuffix("rows"))
    if config.step is None:
        return rows, rows
    if not config.step.endswith("rows"):
        raise SchemaError(f"monitoring.step {config.step!r}: a window of rows needs a step of rows")
    return rows, int(config.step.removesuffix("rows"))
