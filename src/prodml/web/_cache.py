"""A small time-bounded memo for figures too costly to recompute on every refresh of a
page (an experiment's analysis reads the logs): each value lives ``ttl_s`` seconds of
wall time, keyed by what it depends on.

>>> memo = Memo(ttl_s=60.0)
>>> memo.get(("e", 1), lambda: 42), memo.get(("e", 1), lambda: 0)
(42, 42)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Memo"]


class Memo:
    """Values by key for ``ttl_s`` seconds (at most ``size`` keys kept)."""

    def __init__(self, ttl_s: float, size: int = 64) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            found = self._values.get(key)
            if found is not None and now - found[0] < self.ttl_s:
                return found[1]
        value = compute()
        with self._lock:
            if len(self._values) >= self.size:
                oldest = min(self._values, key=lambda k: self._values[k][0])
                del self._values[oldest]
            self._values[key] = (now, value)
        return value
