"""Keep what a training function prints and logs, for the run's ``train.log`` artifact,
while still showing it as usual.

>>> import logging
>>> with captured_output() as log:
...     print("epoch 1")
...     logging.getLogger("user").warning("slow")
epoch 1
>>> log.getvalue().splitlines()
['epoch 1', 'WARNING user: slow']
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = ["captured_output"]


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()


@contextlib.contextmanager
def captured_output(level: int = logging.INFO) -> Iterator[io.StringIO]:
    """Copy stdout, stderr and log records at ``level`` or above into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with (
            contextlib.redirect_stdout(_Tee(sys.stdout, buffer)),
            contextlib.redirect_stderr(_Tee(sys.stderr, buffer)),
        ):
            yield buffer
    finally:
        root.removeHandler(handler)
