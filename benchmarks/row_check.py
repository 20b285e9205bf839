"""Latency of the request-path row check: ``RowValidator.check`` on 20 mixed columns,
against a pydantic v2 model and a msgspec ``Struct`` with the same checks.

Expectations are inferred from a synthetic reference table (floats, ints, categorical
and coded strings, booleans, timestamps); the benchmark times single ``check`` calls on
valid rows drawn from that table and on invalid rows (out of range, unseen category,
pattern mismatch, wrong type, null, NaN), and prints p50/p99 in microseconds.

The peers, built from the same expectations: a pydantic model (strict types, the same
ranges with ``allow_inf_nan=False``, ``Literal`` categories, the same patterns, the same
nullability, extra keys allowed), validated with ``model_validate``; and a
``msgspec.Struct`` (msgspec 0.22.0; ``Meta(ge=, le=)`` ranges, which refuse NaN and ±inf,
``Literal`` categories, ``Meta(pattern=)``, ``T | None`` where nullable, unknown keys
ignored), checked with ``msgspec.convert(row, Row)`` (strict). All three must agree on
every row (valid rows pass all, every invalid row fails all). Two differences, kept as
they are: msgspec stops at a row's first problem where prodml and pydantic list them
all; and ``msgspec.convert`` would parse an RFC 3339 string into a timestamp column
(none of the invalid rows' strings is one).

Where msgspec runs: in its own virtual environment (``benchmarks/.venvs/msgspec``,
created by ``_peers.peer_python``; msgspec is no dependency of prodml), in a child
process (``benchmarks/_row_msgspec.py``) started once per round, which receives the same
valid and invalid rows as JSON on stdin (timestamps and dates tagged and rebuilt as
``datetime``/``date`` objects, NaN kept), warms up, and times its checks with the same
loop (``perf_counter_ns`` around each call, garbage collector off), returning the raw
timings; the percentiles are computed here as for the other two. The timings stay
comparable because the child is the same CPython build (checked: same version) running
the same loop on equal Python objects, while this process only waits; what differs
(interpreter start, JSON decoding, the warm-up) is outside the timed calls. (A one-off
cross-check importing the same msgspec into this process gave the same p50s within 5%.)

Rounds (at least five) alternate the order of the three (prodml, pydantic, msgspec, then
the reverse); each round's p50 over all checks, then the median and the min of the rounds
per system. Ratios in the figures are prodml / peer (the target: within 1.2x of pydantic
on valid rows); the table rows are peer / prodml (``_table.Row``, target 1/1.2). The last
stdout line is one JSON object with the figures and the rows (``_table.emit``).

    python benchmarks/row_check.py            # 50,000 timed checks of each kind
    python benchmarks/row_check.py --quick    # 5,000
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from prodml.validation import RowValidator, infer_expectations, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import peer_python, run_peer
from _table import Row, emit, load_average

MSGSPEC = "msgspec==0.22.0"
MSGSPEC_SCRIPT = Path(__file__).resolve().parent / "_row_msgspec.py"

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


def pydantic_model(expectations: Any) -> Any:
    """A pydantic v2 model that checks what the expectations check."""
    from datetime import date, datetime
    from typing import Annotated, Literal

    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for name, column in expectations.columns.items():
        constraints: dict[str, Any] = {}
        kind: Any
        if column.dtype == "float64":
            kind = float
            constraints["allow_inf_nan"] = False
        elif column.dtype == "int64":
            kind = int
        elif column.dtype == "bool":
            kind = bool
        elif column.dtype == "timestamp":
            kind = datetime
        elif column.dtype == "date":
            kind = date
        else:
            kind = str
        if column.range is not None:
            constraints["ge"], constraints["le"] = column.range.min, column.range.max
        if column.categories is not None:
            kind = Literal[tuple(column.categories.values)]
        elif column.pattern is not None:
            constraints["pattern"] = column.pattern.regex
        annotated: Any = Annotated[kind, Field(**constraints)] if constraints else kind
        if column.nulls is not None and column.nulls.nullable:
            annotated = annotated | None
        fields[name] = (annotated, ...)
    return create_model("Row", __config__=ConfigDict(strict=True, extra="allow"), **fields)


def pydantic_check(model: Any) -> Any:
    """A check in ``RowValidator.check``'s shape: the row's problems (empty: valid)."""
    from pydantic import ValidationError

    validate = model.model_validate

    def check(row: dict[str, Any]) -> list[Any]:
        try:
            validate(row)
        except ValidationError as exc:
            return exc.errors()
        return []

    return check


def msgspec_columns(expectations: Any) -> list[dict[str, Any]]:
    """The expectations as plain data for ``_row_msgspec.row_type`` (its own process)."""
    return [
        {
            "name": name,
            "dtype": column.dtype,
            "min": None if column.range is None else column.range.min,
            "max": None if column.range is None else column.range.max,
            "categories": None if column.categories is None else list(column.categories.values),
            "pattern": None if column.pattern is None else column.pattern.regex,
            "nullable": column.nulls is not None and column.nulls.nullable,
        }
        for name, column in expectations.columns.items()
    ]


def _tag(value: Any) -> Any:
    """JSON for the values ``json`` cannot write, rebuilt by ``_row_msgspec``."""
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    raise TypeError(f"cannot send {type(value).__name__} to the msgspec process")


class MsgspecPeer:
    """msgspec in its own venv and process: one child per round, same rows, same loop."""

    def __init__(self, expectations: Any, valid: list[Any], invalid: list[Any]) -> None:
        self.python = peer_python("msgspec", [MSGSPEC])
        self.script = MSGSPEC_SCRIPT.read_text()
        self.columns = msgspec_columns(expectations)
        self.rows = {"valid": valid, "invalid": invalid}
        self.version = ""

    def run(self, repeat: int, warmup: int) -> dict[str, Any]:
        payload = json.loads(json.dumps({**self.rows, "columns": self.columns}, default=_tag))
        out = run_peer(self.python, self.script, {**payload, "repeat": repeat, "warmup": warmup})
        if out["python"] != platform.python_version():
            raise SystemExit(f"msgspec's interpreter is Python {out['python']}, not "
                             f"{platform.python_version()}: timings would not compare")  # fmt: skip
        if out["valid_accepted"] != len(self.rows["valid"]):
            raise SystemExit("benchmark setup error: a reference row fails msgspec's checks")
        if out["invalid_refused"] != len(self.rows["invalid"]):
            raise SystemExit("benchmark setup error: an invalid row passes msgspec's checks")
        self.version = out["version"]
        return out


def time_checks(validator: Any, rows: list[dict[str, Any]], repeat: int) -> np.ndarray:
    check = validator.check if hasattr(validator, "check") else validator
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
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (>= 5)")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    repeat = 5_000 if args.quick else 50_000

    table = reference_table(20_000)
    expectations = infer_expectations(profile(table))
    validator = RowValidator(expectations)
    peer = pydantic_check(pydantic_model(expectations))
    valid = table.slice(0, 1_000).to_pylist()
    invalid = invalid_rows(valid)
    for name, check in (("prodml", validator.check), ("pydantic", peer)):
        if any(check(row) for row in valid):
            raise SystemExit(f"benchmark setup error: a reference row fails {name}'s checks")
        if not all(check(row) for row in invalid):
            raise SystemExit(f"benchmark setup error: an invalid row passes {name}'s checks")
    fast = MsgspecPeer(expectations, valid, invalid)
    fast.run(10, 10)  # agreement on every row (checked in run); installs msgspec if needed

    for check in (validator.check, peer):
        time_checks(check, valid, min(repeat, 2_000))  # warm up
    rounds: dict[str, dict[str, list[float]]] = {
        name: {"valid": [], "invalid": [], "valid_p99": []}
        for name in ("prodml", "pydantic", "msgspec")
    }

    def in_process(check: Any) -> tuple[np.ndarray, np.ndarray]:
        gc.disable()
        try:
            return time_checks(check, valid, repeat), time_checks(check, invalid, repeat)
        finally:
            gc.enable()

    def in_msgspec() -> tuple[np.ndarray, np.ndarray]:
        out = fast.run(repeat, min(repeat, 2_000))
        return np.asarray(out["valid_ns"]) / 1000.0, np.asarray(out["invalid_ns"]) / 1000.0

    sides = [
        ("prodml", lambda: in_process(validator.check)),
        ("pydantic", lambda: in_process(peer)),
        ("msgspec", in_msgspec),
    ]
    for r in range(args.rounds):
        for name, side in sides if r % 2 == 0 else sides[::-1]:
            ok_us, bad_us = side()
            rounds[name]["valid"].append(float(np.percentile(ok_us, 50)))
            rounds[name]["valid_p99"].append(float(np.percentile(ok_us, 99)))
            rounds[name]["invalid"].append(float(np.percentile(bad_us, 50)))

    def stats(values: list[float]) -> dict[str, float]:
        return {"median": round(float(np.median(values)), 2), "min": round(min(values), 2)}

    ours, theirs, third = rounds["prodml"], rounds["pydantic"], rounds["msgspec"]
    import pydantic

    figures: dict[str, Any] = {
        "benchmark": "row_check",
        "columns": COLUMNS,
        "checks": repeat,
        "rounds": args.rounds,
        "p50_us": stats(ours["valid"])["median"],
        "p99_us": stats(ours["valid_p99"])["median"],
        "invalid_p50_us": stats(ours["invalid"])["median"],
        "prodml": {k: stats(v) for k, v in ours.items()},
        "pydantic": {k: stats(v) for k, v in theirs.items()},
        "msgspec": {k: stats(v) for k, v in third.items()},
        "pydantic_version": pydantic.VERSION,
        "msgspec_version": fast.version,
        "msgspec_process": "own venv and child process per round, same rows via JSON",
        "ratio_valid_p50": round(float(np.median(ours["valid"]) / np.median(theirs["valid"])), 2),
        "ratio_invalid_p50": round(
            float(np.median(ours["invalid"]) / np.median(theirs["invalid"])), 2
        ),
        "ratio_valid_p50_msgspec": round(
            float(np.median(ours["valid"]) / np.median(third["valid"])), 2
        ),
        "ratio_invalid_p50_msgspec": round(
            float(np.median(ours["invalid"]) / np.median(third["invalid"])), 2
        ),
        "target_p50_us": TARGET_P50_US,
        "target_ratio_valid": 1.2,
        "python": platform.python_version(),
        "load_average": load_average(),
    }
    figures["meets_target"] = figures["p50_us"] <= TARGET_P50_US
    figures["within_pydantic_target"] = figures["ratio_valid_p50"] <= 1.2
    for kind in ("valid", "invalid"):
        print(f"{kind + ' rows:':<14} p50 median (min) over {args.rounds} rounds: prodml "
              f"{figures['prodml'][kind]['median']:.2f} ({figures['prodml'][kind]['min']:.2f}) µs, "
              f"pydantic {figures['pydantic'][kind]['median']:.2f} "
              f"({figures['pydantic'][kind]['min']:.2f}) µs; prodml/pydantic "
              f"{figures['ratio_' + kind + '_p50']}x; msgspec "
              f"{figures['msgspec'][kind]['median']:.2f} ({figures['msgspec'][kind]['min']:.2f}) µs, "
              f"prodml/msgspec {figures['ratio_' + kind + '_p50_msgspec']}x")  # fmt: skip
    print(f"all three agree on every row; load {figures['load_average']}")
    emit(figures, table_rows(figures))


def table_rows(figures: dict[str, Any]) -> list[Row]:
    """One row per peer and kind of row: p50 µs per check, medians of the rounds."""
    out = []
    for peer, label in (
        ("pydantic", f"pydantic {figures['pydantic_version']}"),
        ("msgspec", f"msgspec {figures['msgspec_version']}"),
    ):
        for kind in ("valid", "invalid"):
            ours, theirs = figures["prodml"][kind], figures[peer][kind]
            note = (
                f"{COLUMNS} columns, {figures['checks']} checks/round, median of "
                f"{figures['rounds']} rounds (min prodml {ours['min']}, {peer} {theirs['min']})"
            )
            if peer == "msgspec":
                note += "; msgspec in its own venv/process, stops at the first problem"
            out.append(
                Row(
                    benchmark="row_check",
                    measure=f"row check, {kind} rows, p50",
                    prodml=ours["median"],
                    peer=label,
                    peer_value=theirs["median"],
                    unit="µs",
                    target=1 / 1.2 if (peer, kind) == ("pydantic", "valid") else None,
                    note=note,
                )
            )
    return out


if __name__ == "__main__":
    main()
