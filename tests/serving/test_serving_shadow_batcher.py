"""ShadowBatcher: calls batched by size and wait, one executor job per batch, outputs
split back per call, a bad call failing alone, several sinks per batch, the capacity
bound, and close() answering what is still queued."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodml.core import BadOutputError, SimulatedClock
from prodml.serving._predlog import PredictionLog
from prodml.serving._shadow import ShadowBatcher, ShadowCall
from prodml.storage import open_log_stores, read_log


class Sink:
    """Collects what the batcher hands over, and where (which thread)."""

    def __init__(self) -> None:
        self.written: list[tuple[str, Any, str | None]] = []
        self.threads: set[str] = set()
        self.settled: list[tuple[int, int]] = []
        self.settle_threads: set[str] = set()

    def write(
        self,
        calls: Sequence[ShadowCall],
        outputs: Sequence[np.ndarray | None],
        errors: Sequence[str | None],
        ended: float,
    ) -> None:
        self.threads.add(threading.current_thread().name)
        for call, output, error in zip(calls, outputs, errors, strict=True):
            assert ended >= call.started
            self.written.append(
                (call.request_id, None if output is None else output.tolist(), error)
            )

    def settle(self, ok: int, failed: int) -> None:
        self.settle_threads.add(threading.current_thread().name)
        self.settled.append((ok, failed))


def frame(*values: float) -> pd.DataFrame:
    return pd.DataFrame({"x": list(values)})


def doubled(f: pd.DataFrame) -> np.ndarray:
    return np.asarray(f["x"].to_numpy() * 2)


def finite(output: Any, rows: int) -> np.ndarray:
    array = np.asarray(output)
    if len(array) != rows:
        raise BadOutputError("rows")
    if not np.isfinite(array).all():
        raise BadOutputError("NaN")
    return array


def run(
    calls: list[tuple[pd.DataFrame, Sink]],
    *,
    predict: Any = doubled,
    max_size: int = 64,
    max_wait_ms: float = 5.0,
    capacity: int = 1024,
    pause_s: float = 0.0,
) -> tuple[list[bool], list[int], int]:
    """Put every call (each ``pause_s`` apart), close; return put() results, the batch
    sizes seen and the outstanding count after close."""
    batches: list[int] = []

    async def go() -> tuple[list[bool], int]:
        with concurrent.futures.ThreadPoolExecutor(2, "shadow-test") as pool:
            shadow = ShadowBatcher(
                predict, finite, max_size=max_size, max_wait_ms=max_wait_ms, executor=pool,
                name="m:1#shadow", on_batch=batches.append, capacity=capacity,
            )  # fmt: skip
            accepted = []
            for i, (f, sink) in enumerate(calls):
                call = ShadowCall(f, f"r{i}", f"u{i}", time.perf_counter(), sink)
                accepted.append(shadow.put(call))
                if pause_s:
                    await asyncio.sleep(pause_s)
            await shadow.close(timeout_s=10)
            return accepted, shadow.outstanding

    accepted, outstanding = asyncio.run(go())
    return accepted, batches, outstanding


def test_calls_share_batches_and_get_their_own_rows() -> None:
    sink = Sink()
    calls = [(frame(float(i), float(i) + 0.5), sink) for i in range(10)]
    accepted, batches, outstanding = run(calls, max_size=8)
    assert all(accepted)
    assert outstanding == 0
    assert batches == [8, 8, 4]  # full at 8 rows, the rest sent by close()
    expected = [(f"r{i}", [2.0 * i, 2.0 * i + 1.0], None) for i in range(10)]
    assert sorted(sink.written, key=lambda w: int(w[0][1:])) == expected  # batches may overlap
    assert sum(ok for ok, _ in sink.settled) == 10
    assert sink.threads == {t for t in sink.threads if t.startswith("shadow-test")}
    assert sink.settle_threads == {"MainThread"}  # on the event loop


def test_a_batch_goes_after_max_wait() -> None:
    sink = Sink()
    calls = [(frame(1.0), sink), (frame(2.0), sink)]
    _, batches, _ = run(calls, max_wait_ms=1.0, pause_s=0.05)
    assert batches == [1, 1]  # each waited 1 ms alone, then went


def test_one_bad_call_fails_alone() -> None:
    sink = Sink()
    calls = [(frame(1.0), sink), (frame(np.nan), sink), (frame(3.0, 4.0), sink)]
    run(calls)
    assert sink.written == [
        ("r0", [2.0], None),
        ("r1", None, "BadOutputError"),
        ("r2", [6.0, 8.0], None),
    ]
    assert sink.settled == [(2, 1)]


def test_a_failing_model_fails_the_whole_batch() -> None:
    def boom(f: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("boom")

    sink = Sink()
    run([(frame(1.0), sink), (frame(2.0), sink)], predict=boom)
    assert sink.written == [("r0", None, "RuntimeError"), ("r1", None, "RuntimeError")]
    assert sink.settled == [(0, 2)]


def test_wrong_row_count_is_a_bad_output() -> None:
    sink = Sink()
    run([(frame(1.0), sink)], predict=lambda f: np.zeros(len(f) + 1))
    assert sink.written == [("r0", None, "BadOutputError")]


def test_calls_of_several_sinks_are_split_by_sink() -> None:
    a, b = Sink(), Sink()
    run([(frame(1.0), a), (frame(2.0), b), (frame(3.0), a)])
    assert a.written == [("r0", [2.0], None), ("r2", [6.0], None)]
    assert b.written == [("r1", [4.0], None)]
    assert a.settled == [(2, 0)]
    assert b.settled == [(1, 0)]


def test_capacity_bounds_calls_waiting_or_running() -> None:
    sink = Sink()
    accepted, _, outstanding = run([(frame(float(i)), sink) for i in range(5)], capacity=3)
    assert accepted == [True, True, True, False, False]
    assert [request for request, *_ in sink.written] == ["r0", "r1", "r2"]
    assert outstanding == 0


def test_closed_batcher_refuses_calls() -> None:
    async def go() -> bool:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            shadow = ShadowBatcher(
                doubled, finite, max_size=8, max_wait_ms=1, executor=pool, name="m"
            )
            await shadow.close(timeout_s=1)
            return shadow.put(ShadowCall(frame(1.0), "r", "u", time.perf_counter(), Sink()))

    assert asyncio.run(go()) is False


@pytest.mark.parametrize("rows", [1, 3])
def test_call_counts_rows(rows: int) -> None:
    call = ShadowCall(frame(*range(rows)), "r", "u", 0.0, Sink())
    assert call.rows == rows


@pytest.mark.parametrize("one_row_each", [True, False])
def test_shadow_records_are_one_block_with_a_row_per_predicted_row(
    tmp_path: Path, one_row_each: bool
) -> None:
    """What ``PredictionLog.record_shadows`` writes: per row its call's request, unit,
    status, error and latency, the row's index in its call and its output."""
    sizes = [1, 1, 1] if one_row_each else [1, 3, 2]
    calls = [
        ShadowCall(frame(*range(size)), f"r{i}", f"u{i}", 10.0 + i, Sink())
        for i, size in enumerate(sizes)
    ]
    outputs = [np.arange(size) * 10 + i for i, size in enumerate(sizes)]
    failed = [None, "BadOutputError", None]
    log = PredictionLog(
        open_log_stores(tmp_path), clock=SimulatedClock(datetime(2013, 1, 1, tzinfo=UTC))
    )
    for answers in (outputs, [None if e else o for o, e in zip(outputs, failed, strict=True)]):
        errors = [None] * 3 if answers is outputs else failed
        queued = log.record_shadows(
            endpoint="e", arm="shadow", model="m:2", calls=calls, outputs=answers,
            errors=errors, ended=12.5,
        )  # fmt: skip
        assert queued == sum(sizes)
    log.close()
    table = read_log(tmp_path / "logs" / "predictions").to_pylist()
    assert len(table) == 2 * sum(sizes)
    expected = [
        (f"r{i}", f"u{i}", row, (12.5 - 10.0 - i) * 1000)
        for i, size in enumerate(sizes)
        for row in range(size)
    ]
    for half, errors in ((table[: sum(sizes)], [None] * 3), (table[sum(sizes) :], failed)):
        assert [(r["request_id"], r["unit"], r["row"], r["latency_ms"]) for r in half] == expected
        assert all(r["shadow"] and r["arm"] == "shadow" for r in half)
        assert all(r["model_version"] == "m:2" and r["endpoint"] == "e" for r in half)
        want = [
            (None, "error", errors[i]) if errors[i] else (int(outputs[i][row]), "ok", None)
            for i, size in enumerate(sizes)
            for row in range(size)
        ]
        assert [(r["output"], r["status"], r["error"]) for r in half] == want
