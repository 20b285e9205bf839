"""The rules of the request pipeline, as plain functions of what a request carries: its
idempotency key (:class:`RequestKey`), the routing unit and stratum it is routed by, and
what its contract violations and missing entities make of it (the ``on_soft_violation``
and ``on_missing_entity`` policies).

>>> key = RequestKey.of(Call("/invocations", "application/json", idempotency_key="k-1"), None, b"{}")
>>> key.field, key.value, len(key.fingerprint)
('Idempotency-Key', 'k-1', 32)
>>> RequestKey.of(Call("/invocations"), None, b"{}") is None
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from prodml.features import FeatureService, ViewFreshness
from prodml.registry import DeploymentSpec
from prodml.serving._endpoint import stratum_of
from prodml.serving._native import NativeRequest
from prodml.serving._wire import FieldProblem, RequestInvalid
from prodml.validation import RowViolation

__all__ = [
    "DIGEST",
    "MAX_ID_LENGTH",
    "Call",
    "RequestKey",
    "check_ids",
    "missing_entities",
    "refuse_soft_violations",
    "stratum",
    "unit_of",
]

MAX_ID_LENGTH = 128
#: Bytes of a request fingerprint; a stored answer is the fingerprint, then the body.
DIGEST = hashlib.sha256().digest_size


@dataclass(frozen=True)
class Call:
    """What the HTTP layer read of a prediction request besides its body: the route's
    path, the ``Content-Type`` and ``Inference-Header-Content-Length`` headers as sent
    ("" when absent), and the ``X-Request-ID``, ``X-Prodml-Unit`` and
    ``Idempotency-Key`` headers."""

    path: str
    content_type: str = ""
    header_length: str = ""
    request_id: str | None = None
    unit: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class RequestKey:
    """A request's idempotency key with the SHA-256 of what the request asks (route,
    content type and body); the store keeps the fingerprint and the answer's bytes. The
    ``Idempotency-Key`` header is a key proper: reused for a different request, it is
    refused. A body ``id`` (V2, native) is one only with
    ``serving.idempotency_from_body_id`` (callers pass ``None`` otherwise); clients reuse
    such ids freely, so only a byte-identical retry of the same route replays an answer:
    its key includes the fingerprint."""

    value: str
    field: str
    fingerprint: bytes

    @classmethod
    def of(cls, call: Call, body_id: str | None, raw: bytes) -> RequestKey | None:
        if call.idempotency_key:
            return cls(call.idempotency_key, "Idempotency-Key", _fingerprint(call, raw))
        if body_id:
            fingerprint = _fingerprint(call, raw)
            # 64 characters, whatever the id's length
            value = hashlib.sha256(body_id.encode() + b"\0" + fingerprint).hexdigest()
            return cls(value, "id", fingerprint)
        return None

    def refuse_reuse(self, endpoint: str) -> RequestInvalid:
        """The 422 for this key used first with a different request."""
        return RequestInvalid(
            f"{self.field} was first used with a different request to endpoint "
            f"{endpoint!r}; send a new request with a new key",
            status=422,
            details=[FieldProblem(self.field, "reused", "a new key for a different request")],
        )


def _fingerprint(call: Call, raw: bytes) -> bytes:
    """SHA-256 of what a request asks: its route, content type and body."""
    digest = hashlib.sha256()
    for part in (call.path, call.content_type, call.header_length):
        digest.update(part.encode() + b"\0")
    digest.update(raw)
    return digest.digest()


def check_ids(request_id: str, key: RequestKey | None) -> None:
    """Refuse (422) a request id or idempotency key past :data:`MAX_ID_LENGTH`."""
    if len(request_id) > MAX_ID_LENGTH or (key is not None and len(key.value) > MAX_ID_LENGTH):
        raise RequestInvalid(
            f"request id or idempotency key longer than {MAX_ID_LENGTH} characters",
            status=422,
            details=[FieldProblem("id", "too_long", f"at most {MAX_ID_LENGTH} characters")],
        )


def refuse_soft_violations(violations: Sequence[RowViolation], policy: str) -> None:
    """Under ``on_soft_violation = "reject"``, a 422 naming every violation."""
    if violations and policy == "reject":
        raise RequestInvalid.of(
            [FieldProblem(v.column, v.kind, v.message) for v in violations], status=422
        )


def unit_of(
    spec: DeploymentSpec,
    frame: pd.DataFrame,
    *,
    request_id: str,
    unit: str | None,
    native: NativeRequest | None,
) -> str:
    """The routing unit: the one sent (body, else header), else the deployment's
    ``unit`` field of the request (native fields, else the first row), else the
    request id."""
    if unit is None and spec.unit is not None and native is not None:
        found = native.field(spec.unit)
        unit = None if found is None else str(found)
    if unit is None and spec.unit is not None and spec.unit in frame.columns:
        unit = str(frame[spec.unit].iloc[0])
    return unit or request_id


def stratum(
    spec: DeploymentSpec,
    frame: pd.DataFrame,
    rows: Sequence[Mapping[str, Any]],
    native: NativeRequest | None,
) -> str | None:
    """The stratum of the deployment's ``stratify_by`` field in the request's first row
    (None when the deployment is not stratified)."""
    if spec.stratify_by is None:
        return None
    source = native.first_row() if native is not None else (rows[0] if rows else {})
    if not source and spec.stratify_by in frame.columns:
        source = {spec.stratify_by: frame[spec.stratify_by].iloc[0]}
    return stratum_of(source, spec.stratify_by)


def missing_entities(
    service: FeatureService,
    endpoint: str,
    freshness: Mapping[str, ViewFreshness],
    policy: str,
) -> tuple[RowViolation, ...]:
    """One violation per feature view that has no online row for some entity of the
    request; under the ``refuse`` policy, a 422 naming each such view's keys and rows
    instead."""
    keys = {p.view.name: p.view.join_keys for p in service.projections}
    found: list[RowViolation] = []
    problems: list[FieldProblem] = []
    for view, fresh in freshness.items():
        rows = [i for i, present in enumerate(fresh.found) if not present]
        if not rows:
            continue
        names = keys.get(view, ())
        message = (
            f"feature view {view!r} has no online row for the entity ({', '.join(names)}); "
            "its features are null"
        )
        found.append(RowViolation(view, "missing_entity", "warning", message))
        shown = ", ".join(map(str, rows[:10])) + (", …" if len(rows) > 10 else "")
        problems.append(
            FieldProblem(
                "entities." + ",".join(names),
                f"has no row in feature view {view!r} at rows [{shown}]",
                "an entity materialized in the online store",
            )
        )
    if problems and policy == "refuse":
        views = [v.column for v in found]
        raise RequestInvalid(
            f"endpoint {endpoint!r} refuses entities with no online row in feature "
            f"view(s) {views} (on_missing_entity = 'refuse')",
            status=422,
            details=problems,
        )
    return tuple(found)
