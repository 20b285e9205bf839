"""Progress bars for long work (materialization, demo), drawn on stderr with Rich; labels
print literally (no markup or emoji codes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["progress_bar"]

stderr = Console(stderr=True, markup=False, emoji=False)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A callback ``(label, done, total)`` drawing one bar per label on stderr."""
    if not enabled:
        yield lambda label, done, total: None
        return
    bars = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=max(total, 1))
        bars.update(tasks[label], completed=done if total else 1, total=max(total, 1))

    with bars:
        yield update
