"""The msgspec side of ``benchmarks/row_check.py``, run in msgspec's own virtual
environment (``benchmarks/.venvs/msgspec``, see ``_peers.py``) by that benchmark.

Reads one JSON object on stdin: ``columns`` (per column: ``dtype``, ``min``/``max`` or
null, ``categories`` or null, ``pattern`` or null, ``nullable``), ``valid`` and
``invalid`` rows (timestamps and dates tagged as ``{"$datetime": iso}`` /
``{"$date": iso}``, NaN as JSON ``NaN``), ``repeat`` and ``warmup``. Builds a
``msgspec.Struct`` with the same checks, checks that it accepts every valid row and
refuses every invalid one, then times ``repeat`` single checks of each kind with the
same loop as the benchmark (``perf_counter_ns`` around each call, garbage collector
off) and prints one JSON line: the msgspec version, the agreement and the timings in ns.
Only the standard library and msgspec are imported (numpy is not installed here).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import sys
import time
from typing import Annotated, Any, Literal

import msgspec

# Finite floats only: msgspec has no ``allow_inf_nan``, but NaN fails every ``ge``/``le``
# comparison and these bounds refuse ±inf, so a float column without a range still
# refuses non-finite values (every float column of the benchmark has a range anyway).
FLOAT_MAX = sys.float_info.max
KINDS: dict[str, Any] = {
    "float64": float,
    "int64": int,
    "bool": bool,
    "timestamp": dt.datetime,
    "date": dt.date,
    "string": str,
}


def row_type(columns: list[dict[str, Any]]) -> Any:
    """A ``msgspec.Struct`` checking what the expectations check (unknown keys ignored,
    every column required, as in the pydantic model)."""
    fields = []
    for column in columns:
        kind: Any = KINDS.get(column["dtype"], str)
        meta: dict[str, Any] = {}
        if column["dtype"] == "float64":
            meta["ge"], meta["le"] = -FLOAT_MAX, FLOAT_MAX
        if column["min"] is not None:
            meta["ge"], meta["le"] = column["min"], column["max"]
        if column["categories"] is not None:
            kind = Literal[tuple(column["categories"])]
        elif column["pattern"] is not None:
            meta["pattern"] = column["pattern"]
        annotated: Any = Annotated[kind, msgspec.Meta(**meta)] if meta else kind
        if column["nullable"]:
            annotated = annotated | None
        fields.append((column["name"], annotated))
    return msgspec.defstruct("Row", fields)


def decode_value(obj: dict[str, Any]) -> Any:
    if "$datetime" in obj:
        return dt.datetime.fromisoformat(obj["$datetime"])
    if "$date" in obj:
        return dt.date.fromisoformat(obj["$date"])
    return obj


def make_check(kind: Any) -> Any:
    """A check in ``RowValidator.check``'s shape: the row's problems (empty: valid).
    msgspec stops at the first problem, so the list holds at most one message."""
    convert, error = msgspec.convert, msgspec.ValidationError

    def check(row: dict[str, Any]) -> list[str]:
        try:
            convert(row, kind)
        except error as exc:
            return [str(exc)]
        return []

    return check


def time_checks(check: Any, rows: list[dict[str, Any]], repeat: int) -> list[int]:
    clock = time.perf_counter_ns
    timings = [0] * repeat
    for i in range(repeat):
        row = rows[i % len(rows)]
        start = clock()
        check(row)
        timings[i] = clock() - start
    return timings


def main() -> None:
    payload = json.loads(sys.stdin.read(), object_hook=decode_value)
    check = make_check(row_type(payload["columns"]))
    valid, invalid = payload["valid"], payload["invalid"]
    accepted = [not check(row) for row in valid]
    refused = [bool(check(row)) for row in invalid]
    time_checks(check, valid, payload["warmup"])
    gc.disable()
    try:
        valid_ns = time_checks(check, valid, payload["repeat"])
        invalid_ns = time_checks(check, invalid, payload["repeat"])
    finally:
        gc.enable()
    print(
        json.dumps(
            {
                "version": msgspec.__version__,
                "python": sys.version.split()[0],
                "valid_accepted": sum(accepted),
                "invalid_refused": sum(refused),
                "valid_ns": valid_ns,
                "invalid_ns": invalid_ns,
            }
        )
    )


if __name__ == "__main__":
    main()
