"""The figures every benchmark reports the same way, for ``benchmarks/run_all.py``.

A benchmark times prodml and its strongest peer with the same statistic (the median and
the minimum over interleaved rounds: :func:`interleaved`), and ends its output with one
JSON line holding its own figures plus a ``"table"`` list of :class:`Row` — one per
comparison, prodml's figure beside the peer's and the ratio ``peer / prodml`` (above 1:
prodml is faster). ``run_all.py`` collects the rows into the README's table.

A row's ``target`` is the least ratio the project promises (``1.3``: at least 1.3×
faster; ``1 / 1.2``: at most 1.2× slower), or None where there is no target; ``meets``
says whether the measured ratio reaches it. ``note`` says what the row does not: the
size, a condition, why a target is missed.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Row", "emit", "interleaved", "load_average", "summary"]


@dataclass(frozen=True)
class Row:
    """One comparison: ``prodml`` and ``peer_value`` in ``unit`` (lower is better)."""

    benchmark: str
    measure: str
    prodml: float
    peer: str
    peer_value: float
    unit: str
    target: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.peer_value / self.prodml if self.prodml > 0 else float("inf")

    @property
    def meets(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": round(self.ratio, 3), "meets": self.meets}


def summary(values: list[float]) -> dict[str, Any]:
    """The statistic every side gets: median and minimum of its rounds, and the rounds."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "runs": [round(v, 6) for v in values],
    }


def interleaved(rounds: int, sides: Mapping[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each side once per round, in turn (A B C A B C …), so that load on the
    machine falls on all of them alike; each call returns its own figure (seconds of
    the timed part, or any lower-is-better number)."""
    out: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            out[name].append(side())
    return out


def timed(work: Callable[[], Any]) -> float:
    """Seconds ``work()`` takes."""
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def emit(figures: dict[str, Any], rows: list[Row]) -> None:
    """Print the benchmark's last line: its figures, the load average and its rows."""
    out = {**figures, "load_average": load_average(), "table": [r.as_dict() for r in rows]}
    print(json.dumps(out, default=str))
