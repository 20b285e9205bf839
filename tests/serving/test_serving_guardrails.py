"""Per-arm sliding windows: counts, p99, expiry, the memory bound and guardrail reasons."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from prodml.core.errors import ConfigError
from prodml.registry._deployment_spec import Guardrails
from prodml.serving._guardrails import ArmWindow, WindowSummary


def test_empty_window_summary() -> None:
    assert ArmWindow(60).summary(0.0) == WindowSummary(0, 0, 0.0, None)


def test_summary_counts_errors_and_takes_the_higher_p99() -> None:
    window = ArmWindow(60)
    latencies = np.arange(1, 201, dtype=float)  # 1..200 ms
    for i, latency in enumerate(latencies):
        window.record(float(i) / 10, ok=i % 10 != 0, latency_ms=float(latency))
    stats = window.summary(20.0)
    assert stats.requests == 200
    assert stats.errors == 20
    assert stats.error_rate == pytest.approx(0.1)
    assert stats.p99_ms == float(np.percentile(latencies, 99, method="higher")) == 199.0


def test_p99_includes_failed_calls() -> None:
    window = ArmWindow(60)
    for i in range(99):
        window.record(float(i) / 100, ok=True, latency_ms=5.0)
    window.record(1.0, ok=False, latency_ms=5000.0)  # a timeout
    assert window.summary(1.0).p99_ms == 5000.0


def test_old_entries_fall_out_of_the_window() -> None:
    window = ArmWindow(10)
    window.record(0.0, ok=False, latency_ms=900.0)
    window.record(5.0, ok=True, latency_ms=10.0)
    assert window.summary(10.0).requests == 2  # exactly window_s old still counts
    stats = window.summary(10.5)
    assert (stats.requests, stats.errors, stats.p99_ms) == (1, 0, 10.0)
    assert len(window) == 1  # dropped for good
    assert window.summary(100.0).requests == 0
    assert len(window) == 0


def test_summary_over_a_narrower_span_keeps_older_entries() -> None:
    window = ArmWindow(60)
    for t in range(60):
        window.record(float(t), ok=t < 50, latency_ms=1.0)
    assert window.summary(59.0, window_s=9.0).requests == 10
    assert window.summary(59.0, window_s=9.0).errors == 10
    assert window.summary(59.0).requests == 60
    with pytest.raises(ValueError, match="window_s"):
        window.summary(59.0, window_s=61.0)


def test_memory_is_bounded_dropping_the_oldest() -> None:
    window = ArmWindow(3600, max_entries=100)
    for i in range(250):
        window.record(float(i), ok=i >= 150, latency_ms=float(i))
    assert len(window) == 100
    stats = window.summary(250.0)
    assert stats.requests == 100
    assert stats.errors == 0  # the 150 failures were the oldest
    assert stats.p99_ms == 249.0


def test_check_waits_for_min_requests() -> None:
    window = ArmWindow(60)
    rails = Guardrails(window_s=60, min_requests=20, max_error_rate=0.05)
    for i in range(19):
        window.record(float(i), ok=False, latency_ms=1.0)
    assert window.check(19.0, rails) is None
    window.record(19.0, ok=False, latency_ms=1.0)
    assert window.check(19.0, rails) == "error rate 1 over 0.05 in the last 60 s (20 requests)"


def test_check_reports_the_error_rate_first() -> None:
    window = ArmWindow(60)
    for i in range(42):
        window.record(float(i), ok=i % 42 >= 13, latency_ms=900.0)
    rails = Guardrails(window_s=60, min_requests=20, max_error_rate=0.05, max_p99_ms=500)
    assert window.check(42.0, rails) == "error rate 0.31 over 0.05 in the last 60 s (42 requests)"


def test_check_reports_p99_latency() -> None:
    window = ArmWindow(120)
    for i in range(100):
        window.record(float(i), ok=True, latency_ms=812.0 if i >= 98 else 20.0)
    rails = Guardrails(window_s=100, min_requests=20, max_error_rate=0.05, max_p99_ms=500)
    assert window.check(100.0, rails) == (
        "p99 latency 812 ms over 500 ms in the last 100 s (100 requests)"
    )
    assert window.check(100.0, Guardrails(window_s=100, max_p99_ms=1000)) is None


def test_check_within_limits_and_with_limits_off() -> None:
    window = ArmWindow(60)
    for i in range(100):
        window.record(float(i) / 2, ok=i != 0, latency_ms=30.0)
    assert window.check(50.0, Guardrails(window_s=60, max_error_rate=0.05)) is None
    assert window.check(50.0, Guardrails(window_s=60, max_error_rate=None)) is None


def test_check_uses_the_guardrails_window() -> None:
    window = ArmWindow(60)
    for t in range(30):
        window.record(float(t), ok=False, latency_ms=1.0)
    for t in range(30, 60):
        window.record(float(t), ok=True, latency_ms=1.0)
    assert window.check(59.0, Guardrails(window_s=60, min_requests=20)) is not None
    assert window.check(59.0, Guardrails(window_s=25, min_requests=20)) is None


def test_guardrails_window_longer_than_the_arm_window_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="window_s 120 s is longer"):
        ArmWindow(60).check(0.0, Guardrails(window_s=120))


def test_concurrent_records_are_all_kept() -> None:
    window = ArmWindow(60)

    def work() -> None:
        for i in range(1000):
            window.record(1.0, ok=i % 2 == 0, latency_ms=1.0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = window.summary(1.0)
    assert (stats.requests, stats.errors) == (8000, 4000)


@pytest.mark.parametrize("window_s", [0, -1, float("inf"), float("nan")])
def test_rejects_bad_window(window_s: float) -> None:
    with pytest.raises(ValueError, match="window_s"):
        ArmWindow(window_s)


def test_rejects_bad_max_entries() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        ArmWindow(60, max_entries=0)
