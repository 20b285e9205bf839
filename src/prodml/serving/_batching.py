"""Adaptive micro-batching: concurrent requests to one model share one model call.

One consumer task per :class:`MicroBatcher` takes the first queued request plus
whatever else is queued at that moment, up to ``max_size`` rows (a request is never
split; a request larger than ``max_size`` goes alone), optionally waits ``max_wait_ms``
for a fuller batch, and runs ``predict`` on the concatenated frame in an executor so
CPU-bound model code stays off the event loop. While a batch runs, new arrivals queue
and form the next batch: at low load a request waits for nobody, under load batches
grow by themselves. That is the whole policy; the batch size follows the load. When the
model raises on a batch of several requests, each is predicted again on its own, so
that one request's rows (a null where the model wants a number) fail that request only,
not every request it happened to share a batch with.

A light model (one whose full batch predicts in less time than a thread handoff costs;
see :attr:`MicroBatcher.inline_limit_s`) is called on the event loop instead: handing a
sub-millisecond prediction to a worker thread and back costs the process more CPU than
the prediction, and contends for the GIL with the loop. A light model that turns slow
(``_SLOW_STRIKES`` calls in a row over ``_SLOW_FACTOR`` times the limit) goes back to
the executor for good.

The queue is a deque plus an :class:`asyncio.Event` rather than an
:class:`asyncio.Queue` because batching needs to look at the next request before taking
it (does it still fit?). A lone request's frame goes to ``predict`` as it is (no copy,
its own index); batched frames are joined by ``join`` (:func:`combine` unless the model
says otherwise) where the model is called.

>>> import asyncio, concurrent.futures
>>> async def demo() -> list[float]:
...     with concurrent.futures.ThreadPoolExecutor(1) as pool:
...         batcher = MicroBatcher(lambda f: f["x"].to_numpy() * 2, max_size=8,
...                                max_wait_ms=0, executor=pool, name="demo")
...         out = await batcher.submit(pd.DataFrame({"x": [1.0, 2.0]}))
...         await batcher.close()
...         return out.tolist()
>>> asyncio.run(demo())
[2.0, 4.0]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prodml.core.errors import BadOutputError, ServingError

__all__ = ["MicroBatcher", "combine"]

log = logging.getLogger("prodml.serving")

#: A model call on a request's frame or on a batch joined by ``join`` (a frame or array).
Predict = Callable[[Any], np.ndarray]
Join = Callable[[list[pd.DataFrame]], Any]

_SLOW_FACTOR = 4.0  # an inline call over this many times the limit is slow
_SLOW_STRIKES = 3  # slow inline calls in a row before a model leaves the event loop


@dataclass(slots=True)
class _Request:
    frame: pd.DataFrame
    rows: int
    future: asyncio.Future[np.ndarray]


def _fail(requests: list[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)


def check_rows(output: np.ndarray, rows: int, name: str) -> None:
    """Raise :class:`BadOutputError` unless ``output`` has one entry per input row."""
    if output.ndim == 0 or len(output) != rows:
        raise BadOutputError(
            f"model {name!r}: predict returned output of shape {output.shape} for {rows} "
            f"input rows; expected {rows} rows"
        )


def observe_batch(hook: Callable[[int], None] | None, rows: int, name: str) -> None:
    """Call a batcher's ``on_batch`` hook with a batch's row count; a failing hook is
    logged, never raised (a metrics hook must not fail predictions)."""
    if hook is None:
        return
    try:
        hook(rows)
    except Exception:
        log.exception("model %r: the on_batch hook failed", name)


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames stacked, with a fresh index. Frames whose columns all share one numeric
    dtype (the usual request) are stacked as one NumPy block, ~10× cheaper than
    ``pd.concat`` on small frames; anything else goes through ``pd.concat``.

    >>> combine([pd.DataFrame({"a": [1.0], "b": [2.0]}), pd.DataFrame({"a": [3.0], "b": [4.0]})])
         a    b
    0  1.0  2.0
    1  3.0  4.0
    """
    first = frames[0]
    dtypes = set(first.dtypes)
    if len(dtypes) == 1 and next(iter(dtypes)).kind in "fiub":
        blocks = [frame.to_numpy() for frame in frames]
        if all(
            block.dtype == blocks[0].dtype and block.shape[1:] == blocks[0].shape[1:]
            for block in blocks
        ) and all(frame.columns.equals(first.columns) for frame in frames):
            return pd.DataFrame(np.vstack(blocks), columns=first.columns)
    return pd.concat(frames, ignore_index=True)


class MicroBatcher:
    """Queue of requests to one model, answered in adaptive micro-batches.

    ``on_batch`` (e.g. a Prometheus histogram's ``observe``) is called with the row
    count of every batch sent to ``predict``; ``batches`` and ``rows`` count them.
    """

    def __init__(
        self,
        predict: Predict,
        *,
        max_size: int,
        max_wait_ms: float,
        executor: concurrent.futures.Executor,
        name: str,
        on_batch: Callable[[int], None] | None = None,
        join: Join | None = None,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(
                f"MicroBatcher {name!r}: max_size must be an integer >= 1, got {max_size!r}"
            )
        if not (isinstance(max_wait_ms, int | float) and 0 <= max_wait_ms < math.inf):
            raise ValueError(
                f"MicroBatcher {name!r}: max_wait_ms must be a finite number >= 0, got {max_wait_ms!r}"
            )
        self.name = name
        self.max_size = max_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._predict = predict
        self._join: Join = join or combine
        self._executor = executor
        self._on_batch = on_batch
        self._pending: deque[_Request] = deque()
        self._inflight: list[_Request] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._batches = 0
        self._rows = 0
        #: > 0: batches of at most ``max_size`` rows are predicted on the event loop
        #: while they keep to this many seconds (see the module); 0: always the executor.
        self.inline_limit_s = 0.0
        self._slow = 0

    @property
    def batches(self) -> int:
        """Model calls made so far."""
        return self._batches

    @property
    def rows(self) -> int:
        """Rows sent to the model so far."""
        return self._rows

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (not counting the one running)."""
        return len(self._pending)

    async def submit(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's output for ``frame``'s rows, computed in a shared batch."""
        return await self.enqueue(frame)

    def enqueue(self, frame: pd.DataFrame) -> asyncio.Future[np.ndarray]:
        """Queue ``frame`` and return the future of its output, without a task of its own
        (fire-and-forget callers such as shadows add a done-callback); call it from the
        event loop's thread."""
        if self._closed:
            raise ServingError(f"model {self.name!r}: the micro-batcher is closed")
        wakeup = self._wakeup
        task = self._task
        if wakeup is None or task is None or task.done():
            wakeup = self._start()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(frame, len(frame), future))
        wakeup.set()
        return future

    async def close(self) -> None:
        """Stop the consumer; every request not yet answered fails with ServingError."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # unlike ``await task``, keeps our own cancellation
        self._fail_all(ServingError(f"model {self.name!r}: the micro-batcher was closed"))

    def _start(self) -> asyncio.Event:
        """Start (or, after its event loop ended, restart) the consumer in this loop."""
        self._fail_all(ServingError(f"model {self.name!r}: the micro-batcher was restarted"))
        wakeup = self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._consume(wakeup), name=f"prodml-batcher-{self.name}"
        )
        return wakeup

    async def _consume(self, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                wakeup.clear()
                await wakeup.wait()
                continue
            batch, rows, full = self._take([], 0)
            if not batch:  # every queued caller had given up
                continue
            if self.max_wait_s > 0 and not full:
                deadline = loop.time() + self.max_wait_s
                while not full and (remaining := deadline - loop.time()) > 0:
                    wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await wakeup.wait()
                    batch, rows, full = self._take(batch, rows)
            await self._run(loop, batch, rows)

    def _take(self, batch: list[_Request], rows: int) -> tuple[list[_Request], int, bool]:
        """Move queued requests into ``batch`` while they fit; True when nothing more fits."""
        pending = self._pending
        while pending:
            request = pending[0]
            if request.future.done():  # its caller gave up (cancelled) while it queued
                pending.popleft()
                continue
            if batch and rows + request.rows > self.max_size:
                return batch, rows, True
            pending.popleft()
            batch.append(request)
            rows += request.rows
            if rows >= self.max_size:
                return batch, rows, True
        return batch, rows, False

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Request], rows: int) -> None:
        self._inflight = batch  # stays set if we are cancelled: close() fails these
        try:
            output = await self._call(loop, [r.frame for r in batch], rows)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:  # one request's rows may be what the model refused: each alone
                await self._one_by_one(loop, batch)
        else:
            try:
                check_rows(output, rows, self.name)
            except BadOutputError as exc:
                _fail(batch, exc)
            else:
                start = 0
                for request in batch:
                    stop = start + request.rows
                    if not request.future.done():
                        request.future.set_result(output[start:stop])
                    start = stop
        self._inflight = []
        if not self._pending:
            return
        await asyncio.sleep(0)  # let the callers just answered respond before the next batch

    async def _call(
        self, loop: asyncio.AbstractEventLoop, frames: list[pd.DataFrame], rows: int
    ) -> np.ndarray:
        """One model call on ``frames`` (inline for a light model, else in the executor)."""
        self._batches += 1
        self._rows += rows
        observe_batch(self._on_batch, rows, self.name)
        if self.inline_limit_s > 0 and rows <= self.max_size:
            started = time.perf_counter()
            output = np.asarray(self._predict_frames(frames))
            self._timed(time.perf_counter() - started)
            return output
        return np.asarray(await loop.run_in_executor(self._executor, self._predict_frames, frames))

    async def _one_by_one(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        """After a batch the model raised on: each request (still awaited) predicted on
        its own, so that a request whose rows the model cannot take (a null where the
        model wants a number) fails alone, not with every request it was batched with."""
        for request in batch:
            if request.future.done():
                continue
            try:
                output = await self._call(loop, [request.frame], request.rows)
                check_rows(output, request.rows, self.name)
            except Exception as exc:
                _fail([request], exc)
            else:
                if not request.future.done():
                    request.future.set_result(output)

    def _timed(self, elapsed: float) -> None:
        """Count an inline call that took ``elapsed`` s; too many slow ones in a row send
        the model back to the executor."""
        if elapsed <= _SLOW_FACTOR * self.inline_limit_s:
            self._slow = 0
            return
        self._slow += 1
        if self._slow >= _SLOW_STRIKES:
            log.warning(
                "model %r: %d calls in a row took over %.0f µs on the event loop (the last "
                "%.0f µs); its predictions run in the thread pool from now on",
                self.name, self._slow, _SLOW_FACTOR * self.inline_limit_s * 1e6, elapsed * 1e6,
            )  # fmt: skip
            self.inline_limit_s = 0.0

    def _predict_frames(self, frames: list[pd.DataFrame]) -> np.ndarray:
        """Join the batch's frames and predict (in the executor, or inline for a light
        model)."""
        return self._predict(frames[0] if len(frames) == 1 else self._join(frames))

    def _fail_all(self, error: ServingError) -> None:
        requests = [*self._inflight, *self._pending]
        self._inflight = []
        self._pending.clear()
        for request in requests:
            if not request.future.done() and not request.future.get_loop().is_closed():
                request.future.set_exception(error)

    def __repr__(self) -> str:
        return (
            f"MicroBatcher(name={self.name!r}, max_size={self.max_size}, "
            f"max_wait_ms={self.max_wait_s * 1000:g}, batches={self._batches}, rows={self._rows})"
        )
