"""The per-arm circuit breaker: closed → open → half-open trial → closed or open again."""

from __future__ import annotations

import threading

import pytest

from prodml.serving._breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def opened(clock: FakeClock, failures: int = 3, reset_s: float = 10.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failures, reset_s, clock_fn=clock)
    for _ in range(failures):
        breaker.record_failure()
    assert breaker.state == "open"
    return breaker


def test_opens_only_after_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock_fn=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # resets the streak
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.opened_count == 1
    assert breaker.closed_count == 0


def test_stays_open_until_reset_then_allows_exactly_one_trial(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now = 9.999
    assert not breaker.allow()
    assert breaker.state == "open"
    clock.now = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()
    assert not breaker.allow()


def test_successful_trial_closes(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 0
    assert all(breaker.allow() for _ in range(5))
    assert (breaker.opened_count, breaker.closed_count) == (1, 1)


def test_failed_trial_reopens_and_restarts_the_timer(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now = 12.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.opened_count == 2
    clock.now = 21.0  # 10 s after the first opening, only 9 s after the re-opening
    assert not breaker.allow()
    clock.now = 22.0
    assert breaker.allow()


def test_late_outcomes_while_open_change_nothing(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now = 5.0
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.opened_count == 1
    clock.now = 10.0  # the timer was not restarted by the late failure
    assert breaker.allow()


def test_a_lost_trial_does_not_wedge_the_breaker(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now = 10.0
    assert breaker.allow()  # the trial's caller is cancelled and never reports
    clock.now = 19.0
    assert not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()


def test_failures_of_one_open_immediately(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 0.5, clock_fn=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.now = 0.5
    assert breaker.allow()


def test_only_one_of_many_threads_gets_the_trial(clock: FakeClock) -> None:
    breaker = opened(clock)
    clock.now = 10.0
    barrier = threading.Barrier(16)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        allowed = breaker.allow()
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True]


def test_concurrent_failures_open_it_once() -> None:
    breaker = CircuitBreaker(100, 60.0)
    threads = [
        threading.Thread(target=lambda: [breaker.record_failure() for _ in range(50)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.state == "open"
    assert breaker.opened_count == 1


@pytest.mark.parametrize(
    ("failures", "reset_s"), [(0, 1.0), (True, 1.0), (2.5, 1.0), (3, -1.0), (3, float("nan"))]
)
def test_rejects_bad_parameters(failures: object, reset_s: float) -> None:
    with pytest.raises(ValueError, match="CircuitBreaker"):
        CircuitBreaker(failures, reset_s)  # type: ignore[arg-type]


def test_repr_names_the_state(clock: FakeClock) -> None:
    assert "state='open'" in repr(opened(clock))
