"""The request pipeline, as plain Python the HTTP layer calls once it has read a request:
decode the body (the protocol's codec) → fetch features (native: the online store) →
check (soft contract checks and their policy) → route and predict (the runtime) → log
(:class:`~prodml.serving._recording.PredictionRecorder`) → encode. Around them it keeps
the idempotency store (a retried request replays its stored answer), resolves the
routing unit and stratum, and counts requests, latency, replays, contract violations,
feature ages and missing entities.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa

from prodml.core import SchemaError, StateError
from prodml.serving._endpoint import EndpointTable
from prodml.serving._idempotency import IdempotencyStore, open_idempotency_store
from prodml.serving._mlflow_wire import decode_invocations, encode_predictions
from prodml.serving._native import (
    NativeRequest,
    NativeSchema,
    decode_native,
    encode_native,
    native_frame,
)
from prodml.serving._policy import (
    DIGEST,
    Call,
    RequestKey,
    check_ids,
    missing_entities,
    refuse_soft_violations,
    stratum,
    unit_of,
)
from prodml.serving._prediction import Prediction
from prodml.serving._predlog import frame_rows
from prodml.serving._runtime import ServingRuntime
from prodml.serving._v2 import (
    V2Request,
    decode_infer,
    encode_infer_body,
    json_header_length,
    split_infer_body,
)
from prodml.serving._wire import FieldProblem, RequestInvalid
from prodml.validation import RowViolation

__all__ = ["Answer", "OnlineFeatures", "Pipeline"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class Answer:
    """The encoded answer to one request; ``replayed``: from the idempotency store;
    ``header_length``: the length of the JSON before V2 binary tensor data (None: no
    binary outputs)."""

    body: bytes
    request_id: str
    replayed: bool = False
    header_length: int | None = None


@dataclass(frozen=True)
class OnlineFeatures:
    """What the features step found for a native request: the model's input frame, the
    feature-view versions and freshness (per view: ages in seconds, stale flags) read,
    one violation per view some entity has no row in, and whether the answer warns of
    them (the ``warn`` policy)."""

    frame: pd.DataFrame
    versions: dict[str, str]
    freshness: dict[str, tuple[list[float | None], list[bool]]]
    missing: tuple[RowViolation, ...] = ()
    warn_missing: bool = False


class Pipeline:
    """The request path of one runtime, from a decoded HTTP request to its answer."""

    def __init__(self, runtime: ServingRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.idempotency: IdempotencyStore = open_idempotency_store(
            self.config.idempotency_store,
            redis_url=self.config.redis_url,
            max_bytes=self.config.idempotency_max_bytes,
        )

    def close(self) -> None:
        self.idempotency.close()

    # -- the protocols ------------------------------------------------------------------
    async def v2(
        self, table: EndpointTable, raw: bytes, call: Call, *, model: str,
        arm: str | None, header_length: int | None,
    ) -> Answer:  # fmt: skip
        """An Open Inference Protocol V2 infer request to ``model`` (pinned to ``arm``
        when its path names a version)."""
        signature = (table.arms[arm].model if arm else table.primary).signature

        def read() -> V2Request:
            body, binary = split_infer_body(raw, header_length)
            return decode_infer(
                body, signature, binary=binary, model=model, max_rows=self.config.max_batch_rows
            )

        decoded = await self.off_loop(read, heavy=len(raw) > self.config.inline_decode_max_bytes)
        request_id = decoded.id or call.request_id or uuid.uuid4().hex
        header_lengths: list[int | None] = []  # the encoded answer's; none when replayed

        def encode(p: Prediction) -> bytes:
            model_version = p.model.split(":", 1)[1] if p.model else ""
            body, length = encode_infer_body(
                model, model_version, decoded.id, p.scores, signature, outputs=decoded.outputs,
                parameters=decoded.parameters or None, binary=decoded.binary_outputs,
            )  # fmt: skip
            header_lengths.append(length)
            return body

        key = RequestKey.of(call, self.body_id(decoded.id), raw)
        answer = await self.answer(
            table, decoded.frame, call, request_id=request_id, key=key, encode=encode,
            protocol="v2", arm=arm, columns=signature.columns,
        )  # fmt: skip
        if not decoded.binary_outputs:
            return answer
        length = header_lengths[0] if header_lengths else None
        if length is None:  # a replayed answer: measured from its stored bytes
            length = json_header_length(answer.body)
        return replace(answer, header_length=length)

    async def mlflow(self, table: EndpointTable, raw: bytes, call: Call) -> Answer:
        """An MLflow scoring request (``/invocations``) to ``table``'s primary model."""
        model = table.primary
        frame = await self.off_loop(
            partial(
                decode_invocations, raw, call.content_type, model.signature,
                max_rows=self.config.max_batch_rows,
            ),
            heavy=len(raw) > self.config.inline_decode_max_bytes,
        )  # fmt: skip
        request_id = call.request_id or uuid.uuid4().hex

        def encode(p: Prediction) -> bytes:
            return encode_predictions(p.scores)

        return await self.answer(
            table, frame, call, request_id=request_id, key=RequestKey.of(call, None, raw),
            encode=encode, protocol="mlflow", native_output=True, columns=model.columns,
        )  # fmt: skip

    async def native(self, table: EndpointTable, body: Any, raw: bytes, call: Call) -> Answer:
        """A native request (parsed JSON ``body``, sent as ``raw``): entity keys and
        request data, the model's inputs fetched from the online store."""
        spec = table.deployment.spec
        schema = NativeSchema(
            endpoint=table.endpoint,
            signature=table.primary.signature,
            request_types=table.request_types,
            service=table.service,
            service_error=table.service_error,
            routing_fields=tuple(n for n in (spec.unit, spec.stratify_by) if n),
        )
        native = decode_native(body, schema, max_rows=self.config.max_batch_rows)
        online = await self.features(table, schema, native)
        request_id = native.request_id or call.request_id or uuid.uuid4().hex
        hidden = () if online.warn_missing else online.missing

        def encode(p: Prediction) -> bytes:
            return encode_native(p, batch=native.batch, hidden=hidden)

        key = RequestKey.of(call, self.body_id(native.request_id), raw)
        return await self.answer(
            table, online.frame, call, request_id=request_id, key=key, encode=encode,
            protocol="native", unit=native.unit, native=native, online=online,
            columns=table.primary.columns,
        )  # fmt: skip

    # -- the steps ----------------------------------------------------------------------
    async def features(
        self, table: EndpointTable, schema: NativeSchema, native: NativeRequest
    ) -> OnlineFeatures:
        """Fetch the request's entities from the online store (on-demand features
        computed from its request data), count the values' ages, stale values and
        missing entities, and apply the endpoint's ``on_missing_entity`` policy."""
        service = schema.require_service()
        store = self.runtime.features
        if store is None:  # a server without a feature store builds no feature service
            raise StateError(
                f"endpoint {table.endpoint!r} cannot fetch features: this server has no "
                "feature store"
            )
        loop = asyncio.get_running_loop()
        try:
            online = await loop.run_in_executor(
                None, store.get_online, service, native.entities, native.request or None
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # an untyped request field of mixed kinds
            raise RequestInvalid.of(
                [FieldProblem("request_data", "has a field of mixed kinds", "one kind per field")]
            ) from None
        except SchemaError:  # its message may name the request's keys or quote its values
            keys = ", ".join(service.join_keys)
            raise RequestInvalid(
                f"field 'entities' does not fit feature service {service.name!r}: expected its "
                f"entity keys ({keys}) with values of their types",
                status=422,
                details=[FieldProblem("entities", "schema", f"the entity keys {keys}")],
            ) from None
        metrics = self.runtime.metrics
        for view, fresh in online.freshness.items():
            histogram = metrics.feature_age.labels(view)
            for age in fresh.ages_s:
                if age is not None:
                    histogram.observe(age)
            stale = sum(fresh.stale)
            if stale:
                metrics.feature_stale.labels(view).inc(stale)
            absent = len(fresh.found) - sum(fresh.found)
            if absent:
                metrics.missing_entities.labels(table.endpoint, view).inc(absent)
        policy = table.deployment.spec.on_missing_entity or self.config.on_missing_entity
        missing = missing_entities(service, table.endpoint, online.freshness, policy)
        return OnlineFeatures(
            frame=native_frame(native, online.values, schema.signature),
            versions=online.versions,
            freshness={view: (f.ages_s, f.stale) for view, f in online.freshness.items()},
            missing=missing,
            warn_missing=policy == "warn",
        )

    def soft_check(
        self, table: EndpointTable, rows: Sequence[dict[str, Any]]
    ) -> list[RowViolation]:
        """The primary model's soft contract checks of ``rows``, counted."""
        violations = table.primary.check_soft(list(rows))
        for v in violations:
            self.runtime.metrics.violations.labels(table.endpoint, v.column, v.kind).inc()
        return violations

    async def answer(
        self,
        table: EndpointTable,
        frame: pd.DataFrame,
        call: Call,
        *,
        request_id: str,
        key: RequestKey | None,
        encode: Callable[[Prediction], bytes],
        protocol: str,
        unit: str | None = None,
        arm: str | None = None,
        native: NativeRequest | None = None,
        online: OnlineFeatures | None = None,
        native_output: bool = False,
        columns: Sequence[str] | None = None,
    ) -> Answer:
        """Check, route, predict, log, count and encode one decoded request
        (idempotently with a key: the same key with the same request replays the stored
        answer; with another request it is refused)."""
        started = time.perf_counter()
        if len(frame) == 0:  # nothing to predict; a model raising on it is no fault of the arm
            raise RequestInvalid.of([FieldProblem("body", "holds no rows", "at least one row")])
        check_ids(request_id, key)
        cache_key = "" if key is None else f"{table.endpoint}\0{key.value}"
        if key is not None:
            cached = await self.remember(cache_key)
            if cached is not None:
                if cached[:DIGEST] != key.fingerprint:
                    raise key.refuse_reuse(table.endpoint)
                self.runtime.metrics.idempotent_replays.labels(table.endpoint).inc()
                return Answer(cached[DIGEST:], request_id, replayed=True)
        wanted = table.primary.soft is not None or self.runtime.log.log_features
        heavy = len(frame) > self.config.batch_max_size  # its rows and log in a thread

        def inspect() -> tuple[list[dict[str, Any]], list[RowViolation]]:
            rows = frame_rows(frame, columns) if wanted else []
            return rows, self.soft_check(table, rows) if table.primary.soft else []

        rows, violations = await self.off_loop(inspect, heavy=heavy)
        refuse_soft_violations(violations, self.config.on_soft_violation)
        if online is not None and online.missing:
            violations = [*violations, *online.missing]
        spec = table.deployment.spec
        unit_value = unit_of(
            spec, frame, request_id=request_id, unit=unit or call.unit, native=native
        )
        prediction = await self.runtime.predict(
            table, frame, request_id=request_id, unit=unit_value,
            stratum=stratum(spec, frame, rows, native), arm=arm, violations=violations,
            native=native_output,
        )  # fmt: skip
        body = encode(prediction)
        latency_ms = (time.perf_counter() - started) * 1000
        metrics = self.runtime.metrics
        metrics.requests.labels(table.endpoint, prediction.arm, prediction.status, "").inc()
        metrics.latency.labels(table.endpoint, prediction.arm).observe(latency_ms / 1000)
        record = partial(
            self.runtime.recorder.live,
            prediction, frame, rows=rows or None, unit=unit_value, latency_ms=latency_ms,
            protocol=protocol,
            entities=native.entities if native is not None else None,
            feature_versions=online.versions if online is not None else None,
            freshness=online.freshness if online is not None else None,
        )  # fmt: skip
        await self.off_loop(record, heavy=heavy)
        if key is not None:
            await self.remember(cache_key, key.fingerprint + body)
        return Answer(body, request_id)

    # -- plumbing -----------------------------------------------------------------------
    async def off_loop(self, work: Callable[[], _T], *, heavy: bool) -> _T:
        """``work()`` in a worker thread when ``heavy`` (a body over
        ``inline_decode_max_bytes`` to decode, more rows than a micro-batch to check and
        log), so that health probes and other requests are answered meanwhile; on the
        event loop otherwise, where a thread handoff would cost more than the work."""
        if not heavy:
            return work()
        return await asyncio.to_thread(work)

    async def remember(self, key: str, body: bytes | None = None) -> bytes | None:
        """The cached response of ``key`` (``body`` None), or store ``body`` under it.
        A shared store (Redis) is called off the event loop."""
        store = self.idempotency
        ttl = self.config.idempotency_ttl_s
        if self.config.idempotency_store == "memory":
            if body is None:
                return store.get(key)
            store.put(key, body, ttl)
            return None
        loop = asyncio.get_running_loop()
        if body is None:
            return await loop.run_in_executor(None, store.get, key)
        await loop.run_in_executor(None, store.put, key, body, ttl)
        return None

    def body_id(self, value: str | None) -> str | None:
        """A V2 / native body ``id`` as an idempotency key: only with
        ``serving.idempotency_from_body_id`` (else it is a correlation id only)."""
        return value if self.config.idempotency_from_body_id else None
