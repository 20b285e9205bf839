"""Latency of the request-path row check: ``RowValidator.check`` on 20 mixed columns.

Expectations are inferred from a synthetic reference table (floats, ints, categorical
and coded strings, booleans, timestamps); the benchmark times single ``check`` calls on
valid rows drawn from that table and on invalid rows (out of range, unseen category,
pattern mismatch, wrong type, null, NaN), and prints p50/p99 in microseconds. The last
stdout line is one JSON object with the figures.

    python benchmarks/row_check.py            # 50,000 timed checks of each kind
    python benchmarks/row_check.py --quick    # 5,000
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from typing import Any

import numpy as np
import pyarrow as pa

from prodml.validation import RowValidator, infer_expectations, profile

TARGET_P50_US = 50.0
COLUMNS = 20


def reference_table(rows: int, seed: int = 0) -> pa.Table:
    """20 columns: 6 float, 4 int, 4 categorical string, 2 coded string, 2 bool, 2 time."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(6):
        values = rng.normal(10 * i, 1 + i, rows)
        data[f"f{i}"] = pa.array(values, mask=rng.random(rows) < 0.02 * (i % 2))
    for i in range(4):
        data[f"i{i}"] = rng.integers(-100 * i, 1000 * (i + 1), rows)
    carriers = np.array(["AA", "B6", "DL", "EV", "MQ", "UA", "US", "WN", "9E", "VX"])
    for i in range(4):
        data[f"c{i}"] = rng.choice(carriers[: 4 + 2 * i], rows)
    data["tail"] = np.char.add("N", rng.integers(100, 99999, rows).astype(str))
    data["code"] = np.char.add(rng.choice(carriers, rows), rng.integers(1, 9999, rows).astype(str))
    data["b0"] = rng.random(rows) < 0.5
    data["b1"] = rng.random(rows) < 0.1
    start = 1_356_998_400_000_000
    data["ts"] = pa.array(rng.integers(start, start + 365 * 86_400_000_000, rows)).cast(
        pa.timestamp("us", tz="UTC")
    )
    data["day"] = pa.array(rng.integers(15_706, 16_070, rows).astype("int32")).cast(pa.date32())
    return pa.table(data)


def invalid_rows(valid: list[dict[str, Any]], seed: int = 1) -> list[dict[str, Any]]:
    """Copies of valid rows with three columns broken in varied ways."""
    rng = np.random.default_rng(seed)
    breakers = [
        ("f0", 1e9),  # out of range
        ("f2", float("nan")),  # non-finite
        ("i1", "7"),  # wrong type
        ("c3", "ZZ"),  # unseen category
        ("tail", "n-12"),  # pattern mismatch
        ("f4", None),  # null in a non-nullable column
        ("ts", "2013-01-01"),  # wrong type
        ("b0", 1),  # wrong type
    ]
    out = []
    for row in valid:
        broken = dict(row)
        for index in rng.choice(len(breakers), 3, replace=False):
            column, value = breakers[index]
            broken[column] = value
        out.append(broken)
    return out


def time_checks(validator: RowValidator, rows: list[dict[str, Any]], repeat: int) -> np.ndarray:
    check = validator.check
    clock = time.perf_counter_ns
    timings = np.empty(repeat, dtype=np.int64)
    for i in range(repeat):
        row = rows[i % len(rows)]
        start = clock()
        check(row)
        timings[i] = clock() - start
    return timings / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 checks instead of 50,000")
    args = parser.parse_args()
    repeat = 5_000 if args.quick else 50_000

    table = reference_table(20_000)
    expectations = infer_expectations(profile(table))
    validator = RowValidator(expectations)
    valid = table.slice(0, 1_000).to_pylist()
    invalid = invalid_rows(valid)
    if any(validator.check(row) for row in valid):
        raise SystemExit("benchmark setup error: a reference row fails its own expectations")
    if not all(validator.check(row) for row in invalid):
        raise SystemExit("benchmark setup error: an invalid row passes")

    time_checks(validator, valid, min(repeat, 2_000))  # warm up
    gc.disable()
    try:
        ok_us = time_checks(validator, valid, repeat)
        bad_us = time_checks(validator, invalid, repeat)
    finally:
        gc.enable()

    figures: dict[str, Any] = {
        "benchmark": "row_check",
        "columns": COLUMNS,
        "checks": repeat,
        "p50_us": round(float(np.percentile(ok_us, 50)), 2),
        "p99_us": round(float(np.percentile(ok_us, 99)), 2),
        "invalid_p50_us": round(float(np.percentile(bad_us, 50)), 2),
        "invalid_p99_us": round(float(np.percentile(bad_us, 99)), 2),
        "target_p50_us": TARGET_P50_US,
        "python": platform.python_version(),
    }
    figures["meets_target"] = figures["p50_us"] <= TARGET_P50_US
    print(f"valid rows:   p50 {figures['p50_us']:.2f} µs, p99 {figures['p99_us']:.2f} µs")
    print(
        f"invalid rows: p50 {figures['invalid_p50_us']:.2f} µs, "
        f"p99 {figures['invalid_p99_us']:.2f} µs"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
