"""The prediction and label logs of a server: one record per predicted row (live or
shadow) and per label, appended without I/O on the request path and written by the
background thread of a :class:`~prodml.storage.LogWriter` opened on the project's
:class:`~prodml.storage.LogStore` s.

A prediction record is a :class:`~prodml.storage.PredictionRecord` (its fixed fields)
plus the entity keys (:func:`~prodml.storage.entity_column`), the feature values
(:func:`~prodml.storage.feature_column`; live records only: a shadow record joins its
live record by ``request_id`` and ``row``) and, for online reads, the feature views'
age and staleness (:func:`~prodml.storage.feature_age_column`,
:func:`~prodml.storage.feature_stale_column`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from prodml.core import Clock
from prodml.storage import (
    PREDICTION_SCHEMA,
    LogBlock,
    LogStats,
    LogStores,
    PredictionRecord,
    QuarantinedFile,
    entity_column,
    feature_age_column,
    feature_column,
    feature_stale_column,
    log_text,
)

if TYPE_CHECKING:
    from prodml.serving._prediction import Prediction
    from prodml.serving._shadow import ShadowCall

__all__ = ["PredictionLog", "frame_rows"]

_log = logging.getLogger("prodml.serving")

#: The fields of a shadow record that differ by row (the others: by batch).
_SHADOW_VARYING = frozenset(
    {"request_id", "unit", "shadow_of", "status", "error", "latency_ms", "row", "output"}
)
#: A record with every fixed field null, in the order of the columns.
_NO_FIELDS: dict[str, Any] = dict.fromkeys(PREDICTION_SCHEMA.names)


def frame_rows(frame: pd.DataFrame, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts of plain Python values, fast: one conversion of the
    whole frame to an object array (pandas' ``to_dict("records")`` costs ~20× more on
    the one-row frames of the request path). ``names``: the frame's column names when
    the caller knows them (reading them off a pandas 3 index costs more than the rest).

    >>> frame_rows(pd.DataFrame({"x": [1.5], "n": [2], "s": ["a"]}))
    [{'x': 1.5, 'n': 2, 's': 'a'}]
    >>> frame_rows(pd.DataFrame({"x": [float("nan")], "n": [None]}))
    [{'x': None, 'n': None}]
    >>> frame_rows(pd.DataFrame({"x": [1.5, float("nan")], "y": [2.0, 3.0]}))
    [{'x': 1.5, 'y': 2.0}, {'x': None, 'y': 3.0}]
    """
    if names is None or len(names) != frame.shape[1]:
        names = [str(name) for name in frame.columns]
    if getattr(frame, "_is_homogeneous_type", False):  # all float64: no object copy
        floats = frame.to_numpy()
        if floats.dtype == np.float64 and not np.isnan(floats).any():
            return [dict(zip(names, row, strict=True)) for row in floats.tolist()]
    values = frame.to_numpy(dtype=object)
    missing = pd.isna(values)
    if missing.any():  # NaN and NaT were nulls before pandas held them: say so
        if not values.flags.writeable:  # pandas' copy-on-write may hand back a view
            values = values.copy()
        values[missing] = None
    return [dict(zip(names, row, strict=True)) for row in values.tolist()]


class RecentRequests:
    """The request ids of the live predictions one process logged last, per endpoint:
    at most ``limit`` of them, the oldest forgotten first. Feedback is matched against
    them before the log on disk (which lacks what is still queued).

    >>> recent = RecentRequests(limit=2)
    >>> for request_id in ("a", "b", "c"):
    ...     recent.add("e", request_id)
    >>> sorted(recent.known("e", ["a", "b", "c", "d"]))
    ['b', 'c']
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()

    def add(self, endpoint: str, request_id: str) -> None:
        ids = self._ids
        ids[(endpoint, request_id)] = None
        if len(ids) > self.limit:
            ids.popitem(last=False)

    def known(self, endpoint: str, request_ids: Collection[str]) -> set[str]:
        return {i for i in request_ids if (endpoint, i) in self._ids}


class PredictionLog:
    """Writers of a project's prediction and label logs (``logs``)."""

    def __init__(
        self,
        logs: LogStores,
        *,
        clock: Clock,
        flush_rows: int = 5000,
        flush_interval_s: float = 1.0,
        max_queue: int = 200_000,
        log_features: bool = True,
    ) -> None:
        self.clock = clock
        self.log_features = log_features
        self.logs = logs
        self.recent = RecentRequests()
        self._names: dict[tuple[Callable[[str], str], tuple[str, ...]], tuple[str, ...]] = {}
        self._versions_text: dict[tuple[tuple[str, str], ...], str] = {}
        options: dict[str, Any] = {
            "clock": clock,
            "max_batch_rows": flush_rows,
            "max_wait_s": flush_interval_s,
            "max_queue": max_queue,
        }
        self.predictions = logs.predictions.open_writer(**options)
        self.labels = logs.labels.open_writer(**options)

    def record(
        self,
        prediction: Prediction,
        frame: pd.DataFrame,
        *,
        rows: Sequence[Mapping[str, Any]] | None = None,
        unit: str,
        latency_ms: float,
        shadow: bool = False,
        error: str | None = None,
        entities: Mapping[str, Sequence[Any]] | None = None,
        feature_versions: Mapping[str, str] | None = None,
        protocol: str | None = None,
        freshness: Mapping[str, tuple[Sequence[float | None], Sequence[bool]]] | None = None,
    ) -> None:
        """Queue one record per row of ``frame`` (``rows``: the frame's rows as dicts, when
        the caller has them already). A shadow record holds no feature values: they are
        the live record's, found by ``request_id`` and ``row``. ``freshness`` (online
        reads) adds ``feature_age.<view>`` (seconds) and ``feature_stale.<view>`` per row."""
        now = self.clock.now()
        scores = prediction.scores.tolist()
        if not shadow:
            self.recent.add(prediction.endpoint, prediction.request_id)
        if not self.log_features or shadow:
            rows = [{}] * len(frame)
        elif rows is None:
            rows = frame_rows(frame)
        violations = (
            ";".join(sorted({f"{v.column}:{v.kind}" for v in prediction.violations}))
            if prediction.violations
            else None
        )
        base: PredictionRecord = {
            "time": now,
            "request_id": prediction.request_id,
            "endpoint": prediction.endpoint,
            "arm": prediction.arm,
            "role": prediction.role,
            "model_version": prediction.model,
            "unit": unit,
            "stratum": prediction.stratum,
            "status": prediction.status,
            "shadow": shadow,
            "shadow_of": None,
            "latency_ms": latency_ms,
            "propensity": prediction.propensity,
            "fallback_from": prediction.fallback_from,
            "error": error,
            "violations": violations,
            "protocol": protocol,
            # as the file stores it; a record of plain values only is not tracked by the
            # garbage collector, which a full queue of them would otherwise slow down
            "feature_versions": self._versions(feature_versions) if feature_versions else None,
            "row": 0,
            "output": None,
        }
        keyed = (
            tuple(zip(self._prefixed(entities, entity_column), entities.values(), strict=True))
            if entities
            else ()
        )
        fresh = (
            [
                (feature_age_column(view), ages, feature_stale_column(view), stale)
                for view, (ages, stale) in freshness.items()
            ]
            if freshness
            else ()
        )
        records: list[dict[str, Any]] = []
        last = len(scores) - 1
        for index, (features, output) in enumerate(zip(rows, scores, strict=True)):
            # the last row takes the base itself: a one-row request copies nothing
            record: dict[str, Any] = dict(base) if index < last else base  # type: ignore[assignment]
            record["row"] = index
            record["output"] = output
            for column, values in keyed:
                record[column] = values[index]
            if features:
                record.update(
                    zip(self._prefixed(features, feature_column), features.values(), strict=True)
                )
                for age_column, ages, stale_column, stale in fresh:
                    record[age_column] = ages[index]
                    record[stale_column] = stale[index]
            records.append(record)
        self.predictions.extend(records)  # handed over: they are this call's own dicts

    def record_shadows(
        self,
        *,
        endpoint: str,
        arm: str,
        model: str,
        calls: Sequence[ShadowCall],
        outputs: Sequence[np.ndarray | None],
        errors: Sequence[str | None],
        ended: float,
    ) -> int:
        """Queue the records of one batch of shadow calls (``ended``: ``perf_counter()``
        when the batch's answers arrived) as one column block; return how many were
        queued."""
        if all(call.rows == 1 for call in calls):  # the usual case: one row a call
            request_ids = [call.request_id for call in calls]
            units = [call.unit for call in calls]
            live_arms = [call.live_arm or None for call in calls]
            failures = list(errors)
            latencies = [(ended - call.started) * 1000 for call in calls]
            rows = [0] * len(calls)
        else:
            request_ids, units, live_arms, failures, latencies, rows = [], [], [], [], [], []
            for call, error in zip(calls, errors, strict=True):
                count = call.rows
                request_ids += [call.request_id] * count
                units += [call.unit] * count
                live_arms += [call.live_arm or None] * count
                failures += [error] * count
                latencies += [(ended - call.started) * 1000] * count
                rows += range(count)
        statuses = ["ok" if error is None else "error" for error in failures]
        values: list[Any] = []
        answered = [output for output in outputs if output is not None]
        if answered and len(answered) == len(calls):
            values = np.concatenate(answered).tolist()
        else:
            for call, output in zip(calls, outputs, strict=True):
                values += output.tolist() if output is not None else [None] * call.rows
        if not values:
            return 0
        fields = dict(_NO_FIELDS)  # a live record's columns, in order; the rest null
        fields.update(
            time=self.clock.now(), request_id=request_ids, endpoint=endpoint, arm=arm,
            role="shadow", model_version=model, unit=units, status=statuses, shadow=True,
            shadow_of=live_arms,
            latency_ms=latencies, error=failures, row=rows, output=values,
        )  # fmt: skip
        return self.predictions.extend_block(LogBlock(len(values), fields, _SHADOW_VARYING))

    def _prefixed(
        self, mapping: Mapping[str, Any], column: Callable[[str], str]
    ) -> tuple[str, ...]:
        """The column of each key of ``mapping`` (``feature.<name>``, ``entity.<key>``),
        cached per kind and set of keys."""
        key = (column, tuple(mapping))
        names = self._names.get(key)
        if names is None:
            names = tuple(map(column, key[1]))
            if len(self._names) < 1024:
                self._names[key] = names
        return names

    def _versions(self, versions: Mapping[str, str]) -> str:
        """``versions`` as the log's JSON text, cached per content (a server passes the
        same few mappings again and again)."""
        try:
            key = tuple(versions.items())
            text = self._versions_text.get(key)
        except TypeError:  # an unhashable value: no caching
            return log_text(dict(versions))
        if text is None:
            text = log_text(dict(versions))
            if len(self._versions_text) < 1024:
                self._versions_text[key] = text
        return text

    def record_label(self, record: Mapping[str, Any]) -> bool:
        return self.labels.append(record)

    def record_labels(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Queue copies of ``records`` at once, under one lock (so the writer makes one
        file per endpoint and hour); how many were queued (the rest dropped and counted)."""
        return self.labels.extend([dict(record) for record in records])

    def logged_request_ids(
        self, endpoint: str, request_ids: Collection[str], *, since: datetime
    ) -> set[str]:
        """Which of ``request_ids`` the prediction log on disk holds for ``endpoint``,
        among records from ``since`` on (only the ``request_id`` column is read)."""
        moved: list[QuarantinedFile] = []  # an unreadable file costs its own records only
        table = self.logs.predictions.read(
            endpoint=endpoint, start=since, columns=["request_id"], quarantine=moved
        )
        for bad in moved:
            _log.warning(
                "prediction log file %s moved to %s: %s", bad.source, bad.target, bad.reason
            )
        if not table.num_rows:
            return set()
        column = table["request_id"].cast(pa.string())
        wanted = pa.array(list(request_ids), pa.string())
        found = pc.filter(column, pc.is_in(column, value_set=wanted))
        return set(found.unique().to_pylist())

    @property
    def stats(self) -> dict[str, LogStats]:
        return {"predictions": self.predictions.stats, "labels": self.labels.stats}

    def close(self, timeout: float = 10.0) -> None:
        self.predictions.close(timeout=timeout)
        self.labels.close(timeout=timeout)
