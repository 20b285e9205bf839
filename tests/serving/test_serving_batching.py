"""Adaptive micro-batching: what forms a batch, who gets which rows, and failure paths."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodml.core.errors import BadOutputError, ServingError
from prodml.serving._batching import MicroBatcher


class Model:
    """``predict`` = 10 × the ``id`` column; records batch sizes; can hold a call."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self.output: Callable[[pd.DataFrame], Any] | None = None

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        self.sizes.append(len(frame))
        if not self.gate.wait(timeout=60):
            raise RuntimeError("test gate was never opened")
        if self.fail_with is not None:
            raise self.fail_with
        if self.output is not None:
            return np.asarray(self.output(frame))
        return frame["id"].to_numpy() * 10


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture
def model(pool: concurrent.futures.ThreadPoolExecutor) -> Iterator[Model]:
    model = Model()
    yield model
    model.gate.set()  # before the pool shuts down: never leave a worker blocked


def frame(*ids: int) -> pd.DataFrame:
    return pd.DataFrame({"id": list(ids), "x": [float(i) for i in ids]})


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro(), timeout=120)

    return asyncio.run(main())


def make(model: Model, pool: concurrent.futures.Executor, **kwargs: Any) -> MicroBatcher:
    options: dict[str, Any] = {"max_size": 32, "max_wait_ms": 0.0, "name": "m"} | kwargs
    return MicroBatcher(model, executor=pool, **options)


async def until_running(batcher: MicroBatcher, batches: int = 1) -> None:
    while batcher.batches < batches:
        await asyncio.sleep(0.001)


async def hold_first_batch(batcher: MicroBatcher, model: Model) -> asyncio.Task[np.ndarray]:
    """Start a one-row batch that blocks in predict until ``model.gate`` is set."""
    model.gate.clear()
    first = asyncio.create_task(batcher.submit(frame(0)))
    await until_running(batcher)
    return first


def held_batch(
    model: Model, pool: concurrent.futures.Executor, requests: list[pd.DataFrame]
) -> list[Any]:
    """The answers (or errors) of a one-row request held in ``predict`` and of
    ``requests``, queued meanwhile: the next batch."""

    async def scenario() -> list[Any]:
        batcher = make(model, pool)
        first = await hold_first_batch(batcher, model)
        tasks = [asyncio.create_task(batcher.submit(f)) for f in requests]
        await asyncio.sleep(0.01)
        model.gate.set()
        outs = await asyncio.gather(first, *tasks, return_exceptions=True)
        await batcher.close()
        return list(outs)

    return list(run(scenario))


def test_one_request_gets_its_rows(model: Model, pool: concurrent.futures.Executor) -> None:
    async def scenario() -> np.ndarray:
        batcher = make(model, pool)
        try:
            return await batcher.submit(frame(1, 2, 3))
        finally:
            await batcher.close()

    assert run(scenario).tolist() == [10, 20, 30]


def test_sequential_requests_at_low_load_are_not_batched(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    async def scenario() -> list[list[int]]:
        batcher = make(model, pool)
        outs = [(await batcher.submit(frame(i))).tolist() for i in range(5)]
        await batcher.close()
        return outs

    assert run(scenario) == [[0], [10], [20], [30], [40]]
    assert model.sizes == [1] * 5


def test_arrivals_during_a_slow_batch_form_the_next_batch(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    async def scenario() -> tuple[np.ndarray, list[np.ndarray], MicroBatcher]:
        batcher = make(model, pool)
        first = await hold_first_batch(batcher, model)
        rest = [asyncio.create_task(batcher.submit(frame(i, i + 100))) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        assert batcher.queued == 5
        model.gate.set()
        outs = await asyncio.gather(first, *rest)
        await batcher.close()
        return outs[0], list(outs[1:]), batcher

    first, rest, batcher = run(scenario)
    assert model.sizes == [1, 10]
    assert first.tolist() == [0]
    assert [r.tolist() for r in rest] == [[10 * i, 10 * (i + 100)] for i in range(1, 6)]
    assert (batcher.batches, batcher.rows) == (2, 11)


def test_batches_respect_max_size_and_never_split_a_request(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    async def scenario() -> list[np.ndarray]:
        batcher = make(model, pool, max_size=7)
        first = await hold_first_batch(batcher, model)
        sizes = [3, 3, 12, 3, 2, 2, 2]
        starts = np.cumsum([1, *sizes])
        tasks = [
            asyncio.create_task(batcher.submit(frame(*range(start, start + n))))
            for start, n in zip(starts, sizes, strict=False)
        ]
        await asyncio.sleep(0.01)
        model.gate.set()
        outs = await asyncio.gather(first, *tasks)
        await batcher.close()
        return list(outs)

    outs = run(scenario)
    assert model.sizes == [1, 6, 12, 7, 2]  # 3+3 | 12 alone | 3+2+2 fills 7 | 2
    assert all(size <= 7 for size in model.sizes if size != 12)
    assert np.concatenate(outs).tolist() == [10 * i for i in range(28)]


def test_each_caller_gets_exactly_its_own_rows_under_load(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 9, size=200).tolist()
    starts = np.cumsum([0, *sizes]).tolist()

    async def scenario() -> list[np.ndarray]:
        batcher = make(model, pool, max_size=16)

        async def one(start: int, n: int) -> np.ndarray:
            await asyncio.sleep(float(rng.uniform(0, 0.01)))
            return await batcher.submit(frame(*range(start, start + n)))

        outs = await asyncio.gather(*(one(s, n) for s, n in zip(starts, sizes, strict=False)))
        await batcher.close()
        return list(outs)

    outs = run(scenario)
    for start, n, out in zip(starts, sizes, outs, strict=False):
        assert out.tolist() == [10 * i for i in range(start, start + n)]
    assert sum(model.sizes) == sum(sizes)
    assert max(model.sizes) <= 16


def test_two_dimensional_output_is_split_by_rows(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    model.output = lambda f: np.column_stack([f["x"], 1 - f["x"]])

    async def scenario() -> list[np.ndarray]:
        batcher = make(model, pool)
        first = await hold_first_batch(batcher, model)
        tasks = [asyncio.create_task(batcher.submit(frame(i, i))) for i in (1, 2)]
        await asyncio.sleep(0.01)
        model.gate.set()
        outs = await asyncio.gather(first, *tasks)
        await batcher.close()
        return list(outs)

    _, one, two = run(scenario)
    assert one.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert two.tolist() == [[2.0, -1.0], [2.0, -1.0]]


def test_an_exception_reaches_every_request_of_its_batch_only(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    async def scenario() -> tuple[list[Any], np.ndarray]:
        batcher = make(model, pool)
        first = await hold_first_batch(batcher, model)
        tasks = [asyncio.create_task(batcher.submit(frame(i))) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        model.fail_with = ValueError("model exploded")
        model.gate.set()
        outs = await asyncio.gather(first, *tasks, return_exceptions=True)
        model.fail_with = None
        after = await batcher.submit(frame(9))
        await batcher.close()
        return list(outs), after

    outs, after = run(scenario)
    assert all(isinstance(o, ValueError) and str(o) == "model exploded" for o in outs)
    assert model.sizes[:2] == [1, 3]
    assert after.tolist() == [90]


def test_a_request_the_model_refuses_fails_alone_not_its_batch(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    def refuse_13(rows: pd.DataFrame) -> np.ndarray:
        if (rows["id"] == 13).any():
            raise ValueError("Input X contains NaN")
        return rows["id"].to_numpy() * 10

    model.output = refuse_13
    outs = held_batch(model, pool, [frame(1, 2), frame(13), frame(3)])
    assert outs[0].tolist() == [0]
    assert outs[1].tolist() == [10, 20]
    assert isinstance(outs[2], ValueError)
    assert outs[3].tolist() == [30]
    assert model.sizes == [1, 4, 2, 1, 1]  # the batch, then each of its requests alone


@pytest.mark.parametrize(
    "output",
    [lambda f: np.zeros(len(f) + 1), lambda f: np.float64(1.0)],
    ids=["wrong-length", "scalar"],
)
def test_output_of_the_wrong_length_is_bad_output_for_all(
    model: Model, pool: concurrent.futures.Executor, output: Callable[[pd.DataFrame], Any]
) -> None:
    model.output = output
    outs = held_batch(model, pool, [frame(1), frame(2)])
    assert all(isinstance(o, BadOutputError) for o in outs)
    assert "model 'm'" in str(outs[1])
    assert "expected 2 rows" in str(outs[1])


def test_a_cancelled_waiter_does_not_break_the_batcher(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    async def scenario() -> tuple[list[Any], np.ndarray]:
        batcher = make(model, pool)
        first = await hold_first_batch(batcher, model)
        queued_gives_up = asyncio.create_task(asyncio.wait_for(batcher.submit(frame(1)), 0.01))
        stays = asyncio.create_task(batcher.submit(frame(2)))
        with pytest.raises(TimeoutError):
            await queued_gives_up
        first.cancel()  # the in-flight caller gives up too
        model.gate.set()
        outs = await asyncio.gather(first, stays, return_exceptions=True)
        later = await batcher.submit(frame(3, 4))
        await batcher.close()
        return list(outs), later

    outs, later = run(scenario)
    assert isinstance(outs[0], asyncio.CancelledError)
    assert outs[1].tolist() == [20]
    assert later.tolist() == [30, 40]
    assert model.sizes == [1, 1, 2]  # the cancelled queued request was never sent


def test_max_wait_collects_a_fuller_batch(model: Model, pool: concurrent.futures.Executor) -> None:
    async def scenario() -> list[np.ndarray]:
        batcher = make(model, pool, max_wait_ms=300)
        first = asyncio.create_task(batcher.submit(frame(1)))
        await asyncio.sleep(0.02)
        rest = [asyncio.create_task(batcher.submit(frame(i))) for i in (2, 3, 4)]
        outs = await asyncio.gather(first, *rest)
        await batcher.close()
        return list(outs)

    outs = run(scenario)
    assert model.sizes == [4]
    assert [o.tolist() for o in outs] == [[10], [20], [30], [40]]


def test_max_wait_ends_as_soon_as_the_batch_is_full(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    async def scenario() -> float:
        batcher = make(model, pool, max_size=3, max_wait_ms=10_000)
        started = time.monotonic()
        await asyncio.gather(batcher.submit(frame(1)), batcher.submit(frame(2, 3)))
        elapsed = time.monotonic() - started
        await batcher.close()
        return elapsed

    assert run(scenario) < 2.0
    assert model.sizes == [3]


def test_close_fails_pending_requests_and_refuses_new_ones(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    async def scenario() -> list[Any]:
        batcher = make(model, pool)
        first = await hold_first_batch(batcher, model)
        queued = [asyncio.create_task(batcher.submit(frame(i))) for i in (1, 2)]
        await asyncio.sleep(0.01)
        await batcher.close()
        outs = await asyncio.gather(first, *queued, return_exceptions=True)
        with pytest.raises(ServingError, match="closed"):
            await batcher.submit(frame(5))
        return list(outs)

    outs = run(scenario)
    assert all(isinstance(o, ServingError) and "closed" in str(o) for o in outs)


def test_on_batch_hook_sees_every_batch_size(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    seen: list[int] = []

    async def scenario() -> None:
        batcher = make(model, pool, on_batch=seen.append)
        await batcher.submit(frame(1, 2))
        await batcher.submit(frame(3))
        await batcher.close()

    run(scenario)
    assert seen == [2, 1]


def test_a_failing_hook_is_logged_not_raised(
    model: Model, pool: concurrent.futures.Executor, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(size: int) -> None:
        raise RuntimeError("metrics down")

    async def scenario() -> np.ndarray:
        batcher = make(model, pool, on_batch=broken)
        out = await batcher.submit(frame(1))
        await batcher.close()
        return out

    with caplog.at_level(logging.ERROR, logger="prodml.serving"):
        assert run(scenario).tolist() == [10]
    assert "on_batch hook failed" in caplog.text


def test_a_batcher_restarts_in_a_new_event_loop(
    model: Model, pool: concurrent.futures.Executor
) -> None:
    batcher = make(model, pool)

    async def once(i: int) -> list[int]:
        out: np.ndarray = await batcher.submit(frame(i))
        return [int(v) for v in out]

    assert asyncio.run(once(1)) == [10]
    assert asyncio.run(once(2)) == [20]
    asyncio.run(batcher.close())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_size": 0},
        {"max_size": True},
        {"max_wait_ms": -1.0},
        {"max_wait_ms": float("nan")},
        {"max_wait_ms": float("inf")},
    ],
)
def test_rejects_bad_parameters(
    model: Model, pool: concurrent.futures.Executor, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="MicroBatcher 'm'"):
        make(model, pool, **kwargs)


# -- light models on the event loop ----------------------------------------------------
class Threads:
    """A model recording the thread of each call, optionally slow for the first calls."""

    def __init__(self, slow_calls: int = 0, slow_s: float = 0.0) -> None:
        self.threads: list[str] = []
        self.slow_calls = slow_calls
        self.slow_s = slow_s

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) <= self.slow_calls:
            time.sleep(self.slow_s)
        return frame["id"].to_numpy() * 10


def test_an_inline_batcher_predicts_on_the_event_loop(pool: concurrent.futures.Executor) -> None:
    calls = Threads()
    batcher = MicroBatcher(calls, max_size=4, max_wait_ms=0, executor=pool, name="light")
    batcher.inline_limit_s = 1.0  # far above a call's time: a busy machine never trips it

    async def go() -> list[list[int]]:
        outputs = await asyncio.gather(*(batcher.submit(frame(i)) for i in range(6)))
        big = await batcher.submit(frame(*range(10, 16)))  # beyond max_size: the executor
        await batcher.close()
        return [o.tolist() for o in [*outputs, big]]

    loop_thread = threading.current_thread().name
    assert run(go) == [[10 * i] for i in range(6)] + [[10 * i for i in range(10, 16)]]
    assert calls.threads[:-1] == [loop_thread] * (len(calls.threads) - 1)
    assert calls.threads[-1] != loop_thread
    assert batcher.inline_limit_s == 1.0


def test_a_light_model_that_turns_slow_goes_back_to_the_executor(
    pool: concurrent.futures.Executor, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Threads(slow_calls=3, slow_s=0.03)  # 30 ms against a 1 ms limit (slow over 4 ms)
    batcher = MicroBatcher(calls, max_size=4, max_wait_ms=0, executor=pool, name="m:1")
    batcher.inline_limit_s = 0.001

    async def go() -> None:
        for i in range(5):
            assert (await batcher.submit(frame(i))).tolist() == [10 * i]
        await batcher.close()

    with caplog.at_level(logging.WARNING, logger="prodml.serving"):
        run(go)
    loop_thread = threading.current_thread().name
    assert calls.threads[:3] == [loop_thread] * 3
    assert loop_thread not in calls.threads[3:]
    assert batcher.inline_limit_s == 0.0
    assert "'m:1': 3 calls in a row took over 4000 µs" in caplog.text
