"""Per-arm sliding windows of outcomes, checked against a deployment's guardrails.

The server records every call to an arm (when, whether it succeeded, how long it took)
in that arm's :class:`ArmWindow` and asks :meth:`ArmWindow.check` whether the arm breaks
its :class:`~prodml.registry._deployment_spec.Guardrails`; a reason string means "set
this arm's weight to 0 and say why". Times are monotonic seconds (``Clock.monotonic``).

The p99 is NumPy's ``method="higher"`` percentile over every call in the window,
failed ones included (a timeout is a latency too): it is always a latency that was
actually observed and never interpolates below one, so with few requests it errs
towards the slow side, which is the side a guardrail should err on.

>>> from prodml.registry._deployment_spec import Guardrails
>>> window = ArmWindow(window_s=60.0)
>>> for i in range(40):
...     window.record(float(i), ok=i % 4 != 0, latency_ms=10.0 + i)
>>> window.summary(40.0)
WindowSummary(requests=40, errors=10, error_rate=0.25, p99_ms=49.0)
>>> window.check(40.0, Guardrails(window_s=60, min_requests=20, max_error_rate=0.05))
'error rate 0.25 over 0.05 in the last 60 s (40 requests)'
>>> window.check(40.0, Guardrails(window_s=60, min_requests=50)) is None
True
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from prodml.core.errors import ConfigError
from prodml.registry._deployment_spec import Guardrails

__all__ = ["DEFAULT_MAX_ENTRIES", "ArmWindow", "WindowSummary"]

DEFAULT_MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """Requests, errors and latency of one arm over a window; ``p99_ms`` is None when empty."""

    requests: int
    errors: int
    error_rate: float
    p99_ms: float | None


class ArmWindow:
    """The last ``window_s`` seconds of one arm's calls, at most ``max_entries`` of them.

    Past ``max_entries`` the oldest calls are dropped, so under heavy load the window
    covers less than ``window_s`` but memory stays bounded. Record calls in time order
    (a slightly late timestamp only delays its own expiry). Thread-safe.
    """

    def __init__(self, window_s: float, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if not (isinstance(window_s, int | float) and math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"ArmWindow: window_s must be a finite number > 0, got {window_s!r}")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"ArmWindow: max_entries must be an integer >= 1, got {max_entries!r}")
        self.window_s = float(window_s)
        self.max_entries = max_entries
        self._entries: deque[tuple[float, bool, float]] = deque(maxlen=max_entries)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, now: float, ok: bool, latency_ms: float) -> None:
        """Add one call: finished at ``now``, succeeded or not, took ``latency_ms``."""
        with self._lock:
            self._entries.append((now, ok, latency_ms))

    def summary(self, now: float, window_s: float | None = None) -> WindowSummary:
        """Counts and p99 over the last ``window_s`` seconds (default: the whole window).

        Calls older than the window's own ``window_s`` are dropped for good. The cost is
        linear in the calls held: check on an interval, not inside every request.
        """
        span = self.window_s if window_s is None else window_s
        if not 0 < span <= self.window_s:
            raise ValueError(
                f"ArmWindow.summary: window_s must be in (0, {self.window_s:g}], got {span!r}"
            )
        with self._lock:
            entries = self._entries
            horizon = now - self.window_s
            while entries and entries[0][0] < horizon:
                entries.popleft()
            if span == self.window_s:
                selected = list(entries)
            else:
                horizon = now - span
                selected = [e for e in entries if e[0] >= horizon]
        requests = len(selected)
        if requests == 0:
            return WindowSummary(0, 0, 0.0, None)
        errors = sum(1 for e in selected if not e[1])
        latencies = np.fromiter((e[2] for e in selected), dtype=np.float64, count=requests)
        p99 = float(np.percentile(latencies, 99, method="higher"))
        return WindowSummary(requests, errors, errors / requests, p99)

    def check(self, now: float, guardrails: Guardrails) -> str | None:
        """None when the arm is within ``guardrails``, else why it is not.

        Nothing is judged before the window holds ``min_requests`` calls. The error rate
        is checked before the p99; the first breach found is the reason.
        """
        if guardrails.window_s > self.window_s:
            raise ConfigError(
                f"deployment guardrails: window_s {guardrails.window_s:g} s is longer than "
                f"the arm's window of {self.window_s:g} s; expected at most {self.window_s:g}"
            )
        stats = self.summary(now, guardrails.window_s)
        if stats.requests < guardrails.min_requests:
            return None
        where = f"in the last {guardrails.window_s:g} s ({stats.requests} requests)"
        limit = guardrails.max_error_rate
        if limit is not None and stats.error_rate > limit:
            return f"error rate {stats.error_rate:.3g} over {limit:g} {where}"
        p99_limit = guardrails.max_p99_ms
        if p99_limit is not None and stats.p99_ms is not None and stats.p99_ms > p99_limit:
            return f"p99 latency {stats.p99_ms:.4g} ms over {p99_limit:g} ms {where}"
        return None

    def clear(self) -> None:
        """Forget every call (after the arm's model is swapped)."""
        with self._lock:
            self._entries.clear()

    def __repr__(self) -> str:
        return f"ArmWindow(window_s={self.window_s:g}, entries={len(self._entries)})"
