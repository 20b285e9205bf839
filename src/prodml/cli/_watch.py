"""What the ``watch`` commands share: a stop event that SIGINT and SIGTERM set, so a
loop finishes its current pass, releases what it holds and exits cleanly; the loop of
passes itself; JSON event lines; and saying once that a controller stands by for
another's lease, and once that it acts again."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any

import orjson
import typer

__all__ = [
    "PassesOption",
    "Standby",
    "check_interval",
    "repeat",
    "stop_signals",
    "write_json_line",
]

#: ``--passes`` of the controllers' ``watch`` commands.
PassesOption = Annotated[
    int | None, typer.Option(min=1, help="Stop after this many passes (default: never).")
]


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs; the previous handlers
    are restored when it ends."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_interval(interval: float) -> None:
    """A usage error (exit 2) naming ``--interval`` unless it is seconds > 0."""
    if not (math.isfinite(interval) and interval > 0):
        raise typer.BadParameter(
            f"{interval!r}: expected a number of seconds > 0", param_hint="'--interval'"
        )


def repeat(
    stop: threading.Event, interval: float, passes: int | None, work: Callable[[], None]
) -> None:
    """Run ``work`` every ``interval`` seconds (from the start of one pass to the next)
    until ``stop`` is set or ``passes`` passes have run."""
    done = 0
    while not stop.is_set():
        started = time.monotonic()
        work()
        done += 1
        if passes is not None and done >= passes:
            return
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


def write_json_line(event: Mapping[str, Any]) -> None:
    """One watch event as a line of JSON on stdout, flushed."""
    sys.stdout.write(orjson.dumps(event, default=str).decode() + "\n")
    sys.stdout.flush()


class Standby:
    """Whether a controller's watch loop stands by while another controller holds the
    lease: ``say`` is told once when it starts standing by, and once when it acts again."""

    def __init__(self, say: Callable[[Mapping[str, Any]], None]) -> None:
        self.say = say
        self.standing_by = False

    def acting(self) -> None:
        if self.standing_by:
            self.standing_by = False
            self.say({"event": "acting", "message": "lease acquired: acting"})

    def conflict(self, message: str) -> None:
        if not self.standing_by:
            self.standing_by = True
            self.say({"event": "standby", "message": message})
