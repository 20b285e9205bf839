"""Shadow calls: fire-and-forget micro-batches whose answers nobody waits for.

Every sampled request also goes to each shadow arm, so what a shadow costs on the event
loop per request is added to every request. Here it costs one list append: no future,
no task, no callback per request. Calls queue until ``max_size`` rows or ``max_wait_ms``
after the first of them, then one executor job predicts the whole batch, checks the
output and hands each call's slice to its :class:`ShadowSink` (which writes the log
records) in the worker thread. One callback per batch then settles the sinks on the
event loop (circuit breaker, failure counts), where that state lives.

The job never gives up the GIL of its own accord (no ``sleep(0)`` between steps): on a
loaded server every hand-over of the GIL between the job and the event loop cost more
than the job's Python work (a server mirroring every request used 5-10% more CPU per
request when the job offered the GIL between steps of 64 calls). The interpreter's
switch interval still bounds how long the event loop waits for it.

>>> import asyncio, concurrent.futures, time
>>> class Printed:
...     def write(self, calls, outputs, errors, ended):
...         print([(c.request_id, o.tolist(), e) for c, o, e in zip(calls, outputs, errors)])
...     def settle(self, ok, failed):
...         print(f"ok={ok} failed={failed}")
>>> async def demo() -> None:
...     with concurrent.futures.ThreadPoolExecutor(1) as pool:
...         shadow = ShadowBatcher(lambda f: f["x"].to_numpy() * 2, lambda out, rows: out,
...                                max_size=8, max_wait_ms=1, executor=pool, name="demo")
...         sink = Printed()
...         for i in (1, 2):
...             frame = pd.DataFrame({"x": [float(i)]})
...             shadow.put(ShadowCall(frame, f"r{i}", "u", time.perf_counter(), sink))
...         await shadow.close(timeout_s=5)
>>> asyncio.run(demo())
[('r1', [2.0], None), ('r2', [4.0], None)]
ok=2 failed=0
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from prodml.serving._batching import Join, Predict, check_rows, combine, observe_batch

__all__ = ["ShadowBatcher", "ShadowCall", "ShadowSink"]

log = logging.getLogger("prodml.serving")


class ShadowSink(Protocol):
    """Where the answers of one shadow arm of one endpoint go."""

    def write(
        self,
        calls: Sequence[ShadowCall],
        outputs: Sequence[np.ndarray | None],
        errors: Sequence[str | None],
        ended: float,
    ) -> None:
        """Record the calls' outputs (None where ``errors`` names the failure), in the
        worker thread; ``ended`` is ``time.perf_counter()`` when the batch answered."""

    def settle(self, ok: int, failed: int) -> None:
        """Count the batch's successes and failures, on the event loop."""


@dataclass(slots=True)
class ShadowCall:
    """One request mirrored to a shadow (``started``: ``time.perf_counter()``)."""

    frame: pd.DataFrame
    request_id: str
    unit: str
    started: float
    sink: ShadowSink
    #: The arm that answered the request this call mirrors ('' when unknown).
    live_arm: str = ""
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = len(self.frame)


Check = Callable[[Any, int], np.ndarray]


class ShadowBatcher:
    """Batches of shadow calls to one model, predicted in ``executor``.

    ``check(output, rows)`` returns the output as an array or raises (a model's output
    check); ``on_batch`` is called with each batch's row count. At most ``capacity``
    calls wait or run at once: :meth:`put` refuses more (the caller counts a drop), so a
    hanging shadow costs mirrored calls, never memory or latency.
    """

    def __init__(
        self,
        predict: Predict,
        check: Check,
        *,
        max_size: int,
        max_wait_ms: float,
        executor: concurrent.futures.Executor,
        name: str,
        on_batch: Callable[[int], None] | None = None,
        capacity: int = 1024,
        join: Join | None = None,
    ) -> None:
        self.name = name
        self.max_size = max_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.capacity = capacity
        self._predict = predict
        self._join: Join = join or combine
        self._check = check
        self._executor = executor
        self._on_batch = on_batch
        self._pending: list[ShadowCall] = []
        self._pending_rows = 0
        self._outstanding = 0  # calls queued or in a running batch
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Future[list[tuple[ShadowSink, int, int]]]] = set()
        self._closed = False

    @property
    def outstanding(self) -> int:
        """Calls queued or being predicted."""
        return self._outstanding

    def put(self, call: ShadowCall) -> bool:
        """Queue ``call`` (from the event loop's thread); False when the batcher is full
        or closed."""
        if self._closed or self._outstanding >= self.capacity:
            return False
        self._pending.append(call)
        self._pending_rows += call.rows
        self._outstanding += 1
        if self._pending_rows >= self.max_size:
            self._dispatch()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._dispatch)
        return True

    async def close(self, timeout_s: float) -> None:
        """Send what is queued and wait up to ``timeout_s`` for the running batches."""
        self._closed = True
        self._dispatch()
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, rows = self._pending, self._pending_rows
        self._pending, self._pending_rows = [], 0
        if not batch:
            return
        observe_batch(self._on_batch, rows, self.name)
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._executor, self._run, batch)
        self._running.add(running)
        running.add_done_callback(lambda done: self._settle(done, len(batch)))

    def _settle(self, done: asyncio.Future[list[tuple[ShadowSink, int, int]]], calls: int) -> None:
        self._running.discard(done)
        self._outstanding -= calls
        if done.cancelled():
            return
        if (exc := done.exception()) is not None:  # a sink failed to write: a bug
            log.error("model %r: shadow batch of %d calls was lost: %r", self.name, calls, exc)
            return
        for sink, ok, failed in done.result():
            sink.settle(ok, failed)

    def _run(self, batch: list[ShadowCall]) -> list[tuple[ShadowSink, int, int]]:
        """In the executor: predict, check, split by call and hand each sink its calls'
        answers in one write."""
        outputs, errors = self._answers(batch)
        ended = time.perf_counter()
        by_sink: dict[int, tuple[ShadowSink, list[int]]] = {}
        for index, call in enumerate(batch):
            by_sink.setdefault(id(call.sink), (call.sink, []))[1].append(index)
        settled = []
        for sink, indices in by_sink.values():
            if len(by_sink) == 1:
                sink.write(batch, outputs, errors, ended)
            else:
                sink.write(
                    [batch[i] for i in indices],
                    [outputs[i] for i in indices],
                    [errors[i] for i in indices],
                    ended,
                )
            failed = sum(errors[i] is not None for i in indices)
            settled.append((sink, len(indices) - failed, failed))
        return settled

    def _answers(self, batch: list[ShadowCall]) -> tuple[list[np.ndarray | None], list[str | None]]:
        """Each call's output (None on failure) and error name (None on success). The
        whole output is checked once; only when that fails is each call's slice checked
        (one call's extreme inputs must not fail the others)."""
        rows = sum(call.rows for call in batch)
        frames = [call.frame for call in batch]
        try:
            joined = frames[0] if len(frames) == 1 else self._join(frames)
            output = np.asarray(self._predict(joined))
            check_rows(output, rows, self.name)
        except Exception as exc:
            return [None] * len(batch), [type(exc).__name__] * len(batch)
        bounds = np.cumsum([0, *(call.rows for call in batch)]).tolist()
        slices = [output[a:b] for a, b in itertools.pairwise(bounds)]
        try:
            self._check(output, rows)
        except Exception:
            outputs: list[np.ndarray | None] = []
            errors: list[str | None] = []
            for part in slices:
                try:
                    outputs.append(self._check(part, len(part)))
                    errors.append(None)
                except Exception as exc:
                    outputs.append(None)
                    errors.append(type(exc).__name__)
            return outputs, errors
        return list(slices), [None] * len(batch)

    def __repr__(self) -> str:
        return (
            f"ShadowBatcher(name={self.name!r}, max_size={self.max_size}, "
            f"max_wait_ms={self.max_wait_s * 1000:g}, outstanding={self._outstanding})"
        )
