"""One loaded model version as the server runs it: verified bytes, warmed up, behind an
adaptive micro-batcher whose model calls run on a thread pool (off the event loop), with
its output checked against the signature and its inputs' soft contract compiled once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from prodml.core import BadOutputError, ModelTimeoutError, ServingConfig
from prodml.registry import LoadedModel, Signature
from prodml.serving._batching import MicroBatcher, Predict, combine
from prodml.serving._fast_input import array_input_agrees, structurally_eligible
from prodml.serving._metrics import ServingMetrics
from prodml.serving._shadow import ShadowBatcher, ShadowCall
from prodml.validation import Profile, RowValidator, RowViolation, infer_expectations

__all__ = ["NonFiniteOutputError", "ServedModel", "warm_up_frame"]

log = logging.getLogger("prodml.serving")

_FLOAT_KINDS = frozenset("fc")
_SHADOW_WAIT_MS = 100.0  # shadow batches wait this long to fill up
_SHADOW_BATCH = 512
_SHADOW_CAPACITY = 1024  # shadow calls waiting or running per model; more are dropped
_LIBRARY_FORMATS = frozenset({"skops"})  # formats whose predict runs only trusted library code
_TIMINGS = 5  # calls timed to decide whether a model is light enough for the event loop


class NonFiniteOutputError(BadOutputError):
    """A model returned NaN or infinite scores (for extreme inputs, the request's fault)."""


class ServedModel:
    """A model version ready for traffic; :meth:`predict` is the hot path."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        config: ServingConfig,
        executor: Executor,
        metrics: ServingMetrics,
        array_inputs: bool = False,
    ) -> None:
        self.loaded = loaded
        self.ref = loaded.version.ref
        self.version = loaded.version
        self.signature: Signature = loaded.signature
        self.columns = loaded.signature.columns
        self._model = loaded.model
        self._format = loaded.format
        self._model_latency = metrics.model_latency.labels(self.ref)
        self._batch_sizes = metrics.batch_size.labels(self.ref)
        self._config = config
        self._executor = executor
        own = getattr(loaded.model, "predict", None)
        #: The model's own ``predict`` (what MLflow answers); the scores when it has none.
        self._own_predict: Callable[[Any], Any] = (
            own if callable(own) else partial(self._format.predict, self._model)
        )
        #: > 0 once warm_up() found the model light: its live batches run on the event loop
        self.inline_limit_s = 0.0
        self.batcher = self._batcher(self._predict_batch, "")
        self._allow_array = array_inputs
        self.array_input = False  # set by warm_up() once the array path is proven equal
        self._native_batcher: MicroBatcher | None = None
        self._shadow_batcher: ShadowBatcher | None = None
        self.soft = _soft_validator(loaded)
        self._float_output = loaded.signature.output_dtype.startswith("float")
        self._row_shape = tuple(loaded.signature.output_shape)

    def _input(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
        """What the model is called on: the array of a frame on the array path."""
        return X.to_numpy() if self.array_input and isinstance(X, pd.DataFrame) else X

    def _join(self, frames: list[pd.DataFrame]) -> pd.DataFrame | np.ndarray:
        """A batch's frames as one model input: on the array path the frames' arrays
        stacked (no DataFrame is built; ~5x cheaper), else :func:`combine`."""
        if self.array_input:
            return np.vstack([frame.to_numpy() for frame in frames])
        return combine(frames)

    def _scores(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self._format.predict(self._model, self._input(X))

    def _labels(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return np.asarray(self._own_predict(self._input(X)))

    def _predict_batch(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self._scores(X)
        finally:
            self._model_latency.observe(time.perf_counter() - started)

    async def predict(
        self, frame: pd.DataFrame, *, timeout_s: float, native: bool = False
    ) -> np.ndarray:
        """Scores for ``frame`` (columns in signature order), through the micro-batcher;
        with ``native``, the model's own ``predict`` output instead (class labels for a
        classifier: what an MLflow server answers).

        Raises :class:`ModelTimeoutError` after ``timeout_s`` and :class:`BadOutputError`
        when the output has the wrong length or shape, or non-finite floats."""
        batcher = self._native() if native else self.batcher
        try:
            async with asyncio.timeout(timeout_s):  # no extra task, unlike wait_for
                output = await batcher.submit(frame)
        except TimeoutError:
            raise ModelTimeoutError(
                f"model {self.ref}: no answer within {timeout_s * 1000:.0f} ms"
            ) from None
        if native:
            return self._check_rows(np.asarray(output), len(frame))
        return self.check_output(output, len(frame))

    def mirror(self, call: ShadowCall) -> bool:
        """Queue a shadow call (its sink gets the checked output); False when this
        model's shadow queue is full or closed. Shadows have a batcher of their own that
        waits longer for fuller batches, since nobody waits for a shadow's answer."""
        if self._shadow_batcher is None:
            self._shadow_batcher = ShadowBatcher(
                self._predict_batch,
                self.check_output,
                max_size=max(self._config.batch_max_size, _SHADOW_BATCH),
                max_wait_ms=max(self._config.batch_max_wait_ms, _SHADOW_WAIT_MS),
                executor=self._executor,
                name=self.ref + "#shadow",
                on_batch=self._batch_sizes.observe,
                capacity=_SHADOW_CAPACITY,
                join=self._join,
            )
        return self._shadow_batcher.put(call)

    def _batcher(self, predict: Predict, suffix: str) -> MicroBatcher:
        batcher = MicroBatcher(
            predict,
            max_size=self._config.batch_max_size,
            max_wait_ms=self._config.batch_max_wait_ms,
            executor=self._executor,
            name=self.ref + suffix,
            on_batch=self._batch_sizes.observe,
            join=self._join,
        )
        batcher.inline_limit_s = self.inline_limit_s
        return batcher

    def _native(self) -> MicroBatcher:
        if self._native_batcher is None:
            self._native_batcher = self._batcher(self._predict_native, "#native")
        return self._native_batcher

    def _predict_native(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self._labels(X)
        finally:
            self._model_latency.observe(time.perf_counter() - started)

    def _check_rows(self, array: np.ndarray, rows: int) -> np.ndarray:
        if array.ndim == 0 or array.shape[0] != rows:
            raise BadOutputError(
                f"model {self.ref}: returned {array.shape} for {rows} input row(s); "
                "expected one output per row"
            )
        return array

    def check_output(self, scores: Any, rows: int) -> np.ndarray:
        """``scores`` as an array with one entry per row, else :class:`BadOutputError`."""
        array = self._check_rows(np.asarray(scores), rows)
        if self._row_shape and tuple(array.shape[1:]) != self._row_shape:
            raise BadOutputError(
                f"model {self.ref}: output rows have shape {array.shape[1:]}; the signature "
                f"says {self._row_shape}"
            )
        if self._float_output or array.dtype.kind in _FLOAT_KINDS:
            if array.dtype.kind not in "fiub":
                raise BadOutputError(
                    f"model {self.ref}: returned {array.dtype} values; expected numbers "
                    f"({self.signature.output_dtype})"
                )
            if array.dtype.kind in _FLOAT_KINDS and not np.isfinite(array).all():
                raise NonFiniteOutputError(f"model {self.ref}: returned NaN or infinite scores")
        return array

    def check_soft(self, rows: list[Mapping[str, Any]]) -> list[RowViolation]:
        """Soft contract violations (out of range, unseen category, …) of the rows."""
        if self.soft is None:
            return []
        found: list[RowViolation] = []
        for row in rows:
            found.extend(self.soft.check(row))
        return found

    def warm_up(self) -> None:
        """One prediction on a typical row (so the first request pays no lazy setup);
        a failure is logged, not raised: some models refuse synthetic rows."""
        try:
            frame = warm_up_frame(self.loaded)
            self.check_output(self._format.predict(self._model, frame), len(frame))
        except Exception as exc:  # a warm-up failure must not block a deployment
            log.warning("model %s: warm-up prediction failed: %s", self.ref, exc)
            return
        dtypes = [spec.dtype for spec in self.signature.inputs]
        if self._allow_array and structurally_eligible(self._model, self.columns, dtypes):
            sample = check_frame(self.loaded)
            self.array_input = array_input_agrees(
                lambda X: self._format.predict(self._model, X), sample
            ) and array_input_agrees(self._own_predict, sample)
        self._inline_if_light(frame)

    def _inline_if_light(self, row: pd.DataFrame) -> None:
        """Let the live batchers call the model on the event loop when a full batch of
        ``row`` predicts (scores and the model's own ``predict``, median of
        ``_TIMINGS`` calls each) within ``[serving] inline_predict_max_ms``, and the
        format runs only library code (a cloudpickled or pyfunc model could block)."""
        limit_s = self._config.inline_predict_max_ms / 1000.0
        if limit_s <= 0 or self._format.name not in _LIBRARY_FORMATS:
            return
        batch = self._join([row] * self._config.batch_max_size)  # as live batches come
        try:
            light = _median_within(self._scores, batch, limit_s) and _median_within(
                self._labels, batch, limit_s
            )
        except Exception as exc:  # the model refuses a batch of typical rows: stay off the loop
            log.info("model %s: not timed for inline prediction: %s", self.ref, exc)
            return
        if light:
            self.inline_limit_s = limit_s
            for batcher in (self.batcher, self._native_batcher):
                if batcher is not None:
                    batcher.inline_limit_s = limit_s

    async def close(self) -> None:
        """Stop taking calls: queued shadow calls are still predicted and logged (within
        the shutdown timeout); live calls not yet answered fail."""
        if self._shadow_batcher is not None:
            await self._shadow_batcher.close(self._config.shutdown_timeout_s)
        await self.batcher.close()
        if self._native_batcher is not None:
            await self._native_batcher.close()


def _median_within(call: Predict, X: pd.DataFrame | np.ndarray, limit_s: float) -> bool:
    """Whether the median time of ``_TIMINGS`` calls of ``call(X)`` is within
    ``limit_s``. Stops once a majority of calls settles it, so a slow model is called
    ``_TIMINGS // 2 + 1`` times at start-up, not ``_TIMINGS``."""
    majority = _TIMINGS // 2 + 1
    within = over = 0
    while within < majority and over < majority:
        started = time.perf_counter()
        call(X)
        if time.perf_counter() - started <= limit_s:
            within += 1
        else:
            over += 1
    return within >= majority


def check_frame(loaded: LoadedModel) -> pd.DataFrame:
    """Rows of varied typical values (the profile's quantiles, column by column, shifted
    so that rows differ) to compare two ways of calling a model on."""
    base = warm_up_frame(loaded)
    profile = loaded.version.profile or {}
    stats: Mapping[str, Any] = profile.get("columns", {}) if isinstance(profile, dict) else {}
    rows = []
    for k in range(8):
        row = base.iloc[0].to_dict()
        for i, spec in enumerate(loaded.signature.inputs):
            quantiles = list(((stats.get(spec.name) or {}).get("quantiles") or {}).values())
            numbers = [q for q in quantiles if isinstance(q, int | float) and math.isfinite(q)]
            if numbers and spec.dtype.startswith(("float", "int", "uint")):
                value = numbers[(k + i) % len(numbers)]
                row[spec.name] = round(value) if spec.dtype.startswith(("int", "uint")) else value
        rows.append(row)
    return pd.DataFrame(rows, columns=base.columns).astype(base.dtypes.to_dict())


def _soft_validator(loaded: LoadedModel) -> RowValidator | None:
    """Expectations of the model's inputs inferred from its training profile, as a row
    check; every violation it finds is soft (the hard contract is the signature)."""
    data = loaded.version.profile
    if not data:
        return None
    try:
        profile = Profile.model_validate(data)
    except ValueError as exc:
        log.warning(
            "model %s: training profile unreadable, no soft checks: %s", loaded.version.ref, exc
        )
        return None
    columns = {n: c for n, c in profile.columns.items() if n in set(loaded.signature.columns)}
    expectations = infer_expectations(profile.model_copy(update={"columns": columns}))
    # Types are the signature's business (a nullable int column of the training set is a
    # float64 model input): keep ranges, categories, nulls and finiteness, not dtypes.
    untyped = {
        name: expectation.model_copy(update={"dtype": None})
        for name, expectation in expectations.columns.items()
    }
    return RowValidator(expectations.model_copy(update={"columns": untyped}))


def warm_up_frame(loaded: LoadedModel) -> pd.DataFrame:
    """One row of typical values: profile medians and most frequent categories, else
    zeros and empty strings."""
    profile = loaded.version.profile or {}
    stats: Mapping[str, Any] = profile.get("columns", {}) if isinstance(profile, dict) else {}
    row: dict[str, Any] = {}
    for spec in loaded.signature.inputs:
        column = stats.get(spec.name) or {}
        row[spec.name] = _typical(spec.dtype, column)
    frame = pd.DataFrame([row], columns=loaded.signature.columns)
    for spec in loaded.signature.inputs:
        if spec.dtype.startswith(("int", "uint")):
            frame[spec.name] = frame[spec.name].astype("int64")
        elif spec.dtype.startswith("float"):
            frame[spec.name] = frame[spec.name].astype("float64")
    return frame


def _typical(dtype: str, column: Mapping[str, Any]) -> Any:
    quantiles = column.get("quantiles") or {}
    top = column.get("top_categories") or []
    if dtype.startswith(("float", "int", "uint")):
        median = quantiles.get("0.5", quantiles.get("p50", column.get("mean")))
        value = float(median) if isinstance(median, int | float) else 0.0
        if not math.isfinite(value):
            value = 0.0
        return round(value) if dtype.startswith(("int", "uint")) else value
    if dtype == "bool":
        return bool(top[0]["value"]) if top else False
    if dtype == "string":
        return str(top[0]["value"]) if top else ""
    return None
