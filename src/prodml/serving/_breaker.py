"""A circuit breaker per arm: stop calling a model that keeps failing, probe it later.

``closed`` (calls flow) → ``open`` after ``failures`` consecutive failures; while open,
:meth:`CircuitBreaker.allow` says no until ``reset_s`` seconds have passed; then the
breaker is ``half_open`` and lets exactly one trial call through (concurrent callers
are refused). The trial's :meth:`~CircuitBreaker.record_success` closes the breaker, its
:meth:`~CircuitBreaker.record_failure` opens it again and restarts the timer. A trial
whose outcome is never recorded (its caller was cancelled) does not wedge the breaker:
after another ``reset_s`` a new trial is allowed.

The breaker sits on every request, so the closed-state check takes no lock; transitions
take one. Time comes from ``clock_fn`` (monotonic seconds) so tests drive it by hand:

>>> now = [0.0]
>>> breaker = CircuitBreaker(failures=2, reset_s=10.0, clock_fn=lambda: now[0])
>>> breaker.record_failure(); breaker.record_failure()
>>> breaker.state, breaker.allow()
('open', False)
>>> now[0] = 10.0
>>> breaker.state, breaker.allow(), breaker.allow()
('half_open', True, False)
>>> breaker.record_success()
>>> breaker.state, breaker.opened_count, breaker.closed_count
('closed', 1, 1)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure circuit breaker for one arm; thread-safe.

    Outcomes recorded while the breaker is ``open`` (calls that started before it
    opened and finish late) change nothing: only the half-open trial decides whether
    the arm has recovered.
    """

    def __init__(
        self,
        failures: int,
        reset_s: float,
        clock_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ValueError(f"CircuitBreaker: failures must be an integer >= 1, got {failures!r}")
        if not (isinstance(reset_s, int | float) and math.isfinite(reset_s) and reset_s >= 0):
            raise ValueError(
                f"CircuitBreaker: reset_s must be a finite number >= 0, got {reset_s!r}"
            )
        self.failures = failures
        self.reset_s = float(reset_s)
        self._clock = clock_fn
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_started: float | None = None
        self._opened_count = 0
        self._closed_count = 0

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open`` (an open breaker whose wait is over)."""
        if self._state == "closed":
            return "closed"
        with self._lock:
            return self._refresh(self._clock())

    @property
    def opened_count(self) -> int:
        """How many times the breaker has opened (including re-opens after a failed trial)."""
        return self._opened_count

    @property
    def closed_count(self) -> int:
        """How many times a successful trial has closed the breaker."""
        return self._closed_count

    @property
    def consecutive_failures(self) -> int:
        """Failures recorded since the last success."""
        return self._consecutive

    def allow(self) -> bool:
        """Whether a call may go to the arm now; in ``half_open``, True for one caller only."""
        if self._state == "closed":  # the hot path: a plain attribute read, no lock
            return True
        with self._lock:
            now = self._clock()
            state = self._refresh(now)  # another thread may have closed it meanwhile
            if state == "closed":
                return True
            if state == "open":
                return False
            if self._trial_started is not None and now - self._trial_started < self.reset_s:
                return False
            self._trial_started = now
            return True

    def record_success(self) -> None:
        """A call succeeded: a half-open breaker closes; a closed one forgets its failures."""
        if self._state == "closed" and self._consecutive == 0:
            return
        with self._lock:
            state = self._refresh(self._clock())
            if state == "closed":
                self._consecutive = 0
            elif state == "half_open":
                self._state = "closed"
                self._consecutive = 0
                self._trial_started = None
                self._closed_count += 1

    def record_failure(self) -> None:
        """A call failed: count it while closed; a failed trial re-opens the breaker."""
        with self._lock:
            now = self._clock()
            state = self._refresh(now)
            if state == "closed":
                self._consecutive += 1
                if self._consecutive >= self.failures:
                    self._open(now)
            elif state == "half_open":
                self._consecutive += 1
                self._open(now)

    def _refresh(self, now: float) -> BreakerState:
        """Move ``open`` to ``half_open`` once ``reset_s`` has passed (lock held)."""
        if self._state == "open" and now - self._opened_at >= self.reset_s:
            self._state = "half_open"
            self._trial_started = None
        return self._state

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._trial_started = None
        self._opened_count += 1

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state!r}, failures={self.failures}, "
            f"reset_s={self.reset_s:g}, opened_count={self._opened_count})"
        )
