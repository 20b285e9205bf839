"""The on-disk format of the prediction and label logs, shared by the writer
(:mod:`prodml.storage._logs`) and the reader (:mod:`prodml.storage._log_reader`): where a
partition's files of one UTC hour live, where an unreadable file is moved aside, and how
a column of Python values becomes an Arrow array (never failing because of an odd value).
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from prodml.core import ensure_utc
from prodml.core.errors import SchemaError

__all__ = [
    "CHANGED_MARKER",
    "DATE_KEY",
    "HOUR_KEY",
    "LABELS_DIR",
    "LOG_TIMESTAMP",
    "PREDICTIONS_DIR",
    "QUARANTINE_DIR",
    "check_partition",
    "column_array",
    "hour_dir",
    "log_text",
    "mark_changed",
    "quarantine_root",
    "utf8_text",
]

#: Directory keys below a partition: ``<partition_field>=<name>/date=<YYYY-MM-DD>/hour=<HH>``.
DATE_KEY = "date"
HOUR_KEY = "hour"
#: Where a project keeps its prediction and label logs, under its state directory.
PREDICTIONS_DIR = Path("logs") / "predictions"
LABELS_DIR = Path("logs") / "labels"
#: Where unreadable log files are moved, each under its log's name and its own relative
#: path (``logs/quarantine/predictions/endpoint=…/date=…/hour=…/<file>``): outside both
#: logs, so no reader lists them again, on the same filesystem, so the move is atomic.
QUARANTINE_DIR = Path("logs") / "quarantine"
#: The Arrow type of every datetime column in the log.
LOG_TIMESTAMP = pa.timestamp("us", tz="UTC")

_PARTITION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_NONE = frozenset({type(None)})
_PLAIN = frozenset({str, bool, int, float, dict, list, tuple})
_ARROW_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
}
_JSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_NAIVE_UTC
    | orjson.OPT_SERIALIZE_NUMPY
)


def check_partition(value: object, *, field: str = "endpoint") -> str:
    """Return ``value`` if it is a path-safe partition name, else raise :class:`SchemaError`.

    >>> check_partition("flight_delay-v2.eu")
    'flight_delay-v2.eu'
    """
    if not isinstance(value, str) or not _PARTITION_NAME.fullmatch(value):
        raise SchemaError(
            f"log record field {field!r}: expected a partition name of 1-128 letters, digits, "
            f"'_', '-' or '.' (not starting with '.'), got {value!r:.80}"
        )
    return value


def hour_dir(root: Path, field: str, partition: str, day: date, hour: int) -> Path:
    """The directory holding one partition's records of one UTC hour."""
    return (
        root / f"{field}={partition}" / f"{DATE_KEY}={day.isoformat()}" / f"{HOUR_KEY}={hour:02d}"
    )


#: A hidden file in each date directory of a log whose mtime every change to the
#: directory's files moves: touched just before a file is renamed into place or moved
#: aside, and again just after. A backup that finds the mtime it recorded (older than its
#: racy window) knows the date's files are the ones it listed then, without listing its
#: hour directories (see ``prodml.ops._backup_files``). Files under the logs are written
#: only through the writer and moved only by the quarantine, which both touch it.
CHANGED_MARKER = ".changed"


def mark_changed(day_dir: Path) -> None:
    """Touch the :data:`CHANGED_MARKER` of the date directory ``day_dir`` (which exists),
    creating it if missing."""
    fd = os.open(day_dir / CHANGED_MARKER, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def quarantine_root(log_root: Path) -> Path:
    """The quarantine of the log under ``log_root``: a sibling ``quarantine`` directory,
    then the log's own name.

    >>> quarantine_root(Path(".prodml") / PREDICTIONS_DIR).as_posix()
    '.prodml/logs/quarantine/predictions'
    """
    return log_root.parent / QUARANTINE_DIR.name / log_root.name


def column_array(values: Sequence[Any]) -> pa.Array:
    """One column of a log file; never fails because of an odd value.

    A single kind of value keeps its type (ints and floats together become float64;
    datetimes become UTC timestamps); dicts, lists and mixed kinds become strings, with
    non-strings JSON-encoded (sorted keys) and datetimes written like
    ``2013-01-01 05:00:00.000000Z`` (as Arrow casts timestamps to strings).

    >>> column_array([1, None, 2.5]).type, column_array([1, "a", {"b": [True]}]).to_pylist()
    (DataType(double), ['1', 'a', '{"b":[true]}'])
    """
    kinds = set(map(type, values)) - _NONE
    if not all(kind in _PLAIN or issubclass(kind, datetime) for kind in kinds):
        values = [_plain(value) for value in values]
        kinds = set(map(type, values)) - _NONE
    if not kinds:
        return pa.nulls(len(values))
    if all(issubclass(kind, datetime) for kind in kinds):
        try:
            return pa.array([None if v is None else ensure_utc(v) for v in values], LOG_TIMESTAMP)
        except Exception:  # a tzinfo is user code: stored as text below
            # pandas' NaT (a datetime unequal to itself) is a missing time: a null
            values = [None if v is None or v != v else v for v in values]
            try:
                times = [None if v is None else ensure_utc(v) for v in values]
                return pa.array(times, LOG_TIMESTAMP)
            except Exception:  # an offset that raises or leaves the range
                pass
    arrow_type = pa.float64() if kinds == {int, float} else None
    if len(kinds) == 1:
        arrow_type = _ARROW_TYPES.get(kinds.pop())
    if arrow_type is not None:
        try:
            return pa.array(values, arrow_type)
        except (pa.ArrowException, OverflowError, UnicodeEncodeError):
            pass  # an int beyond int64, a str that is not UTF-8: stored as text below
    texts = [None if v is None else log_text(v) for v in values]
    try:
        return pa.array(texts, pa.string())
    except UnicodeEncodeError:
        return pa.array([None if t is None else utf8_text(t) for t in texts], pa.string())


def utf8_text(text: str) -> str:
    """``text`` as UTF-8 can hold it: a lone surrogate (which JSON decoders let through)
    written as its escape, so that one such value never makes a log file unwritable.

    >>> utf8_text("a\\ud800b") == "a\\\\ud800b", utf8_text("é")
    (True, 'é')
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _plain(value: Any) -> Any:
    """A plain Python value for a NumPy scalar, an enum member or another odd type."""
    if value is None or type(value) in _PLAIN or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return log_text(value)


def log_text(value: Any) -> str:
    """``value`` as a text column of the log holds it: a string itself, a datetime like
    ``2013-01-01 05:00:00.000000Z``, a date in ISO form, anything else as JSON (sorted
    keys; ``str`` of what JSON cannot hold). A writer that turns a dict into text before
    queueing it stores what :func:`column_array` would have.

    >>> log_text({"b": "2", "a": "1"})
    '{"a":"1","b":"2"}'
    """
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, datetime):  # as Arrow casts a timestamp to string, so that files agree
        try:
            return ensure_utc(value).strftime("%Y-%m-%d %H:%M:%S.%fZ")
        except Exception:  # a tzinfo that raises, a UTC time before year 1
            return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    try:
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return str(value)
