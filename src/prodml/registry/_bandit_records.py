"""The bandit records of the deployment store: each endpoint's shared posterior (replicas
merge deltas into it under its row lock) and which arm served each bandit request, so a
reward arriving at any replica finds its arm."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from prodml.core import Clock, DefinitionError, check_name
from prodml.registry._versions import dialect_insert
from prodml.stats import BanditKind, BanditState
from prodml.storage import MetadataDB
from prodml.storage._models import Base

__all__ = ["BanditRecords"]

_STATES = Base.metadata.tables["bandit_states"]
_DECISIONS = Base.metadata.tables["bandit_decisions"]
_CHUNK = 500  # bound parameters per IN (...) query, well under SQLite's limit


class BanditRecords:
    """Bandit state and decisions over ``_db`` (the :class:`DeploymentStore` part that
    serving replicas use on the request path)."""

    _db: MetadataDB
    _clock: Clock

    def bandit_state(self, endpoint: str) -> dict[str, Any] | None:
        """The shared posterior of ``endpoint`` (``BanditState.to_dict()`` form), if any."""
        with self._db.session() as session:
            query = select(_STATES.c.state).where(_STATES.c.endpoint == endpoint)
            state = session.connection().execute(query).scalar_one_or_none()
            return None if state is None else dict(state)

    def merge_bandit(
        self, endpoint: str, delta: Mapping[str, Any], *, kind: BanditKind, arms: Sequence[str]
    ) -> dict[str, Any]:
        """Fold a replica's ``delta`` (a state started from ``BanditState.empty()``) into
        the stored state under its row lock, and return the result. The stored state
        starts from the prior when there is none, or when its kind or arm set differs
        from ``kind``/``arms`` (the deployment changed: old evidence is about other arms)."""
        check_name(endpoint, kind="endpoint")
        change = BanditState.from_dict(delta)
        fresh = BanditState.new(kind, arms)
        with self._db.write() as session:
            conn, now = session.connection(), self._clock.now()
            conn.execute(
                dialect_insert(session)(_STATES)
                .values(endpoint=endpoint, state=fresh.to_dict(), updated_at=now)
                .on_conflict_do_nothing(index_elements=["endpoint"])
            )
            query = select(_STATES.c.state).where(_STATES.c.endpoint == endpoint)
            state = BanditState.from_dict(conn.execute(query.with_for_update()).scalar_one())
            if state.kind != fresh.kind or set(state.arms) != set(fresh.arms):
                state = fresh
            merged = state.merge(change).to_dict()
            conn.execute(
                update(_STATES)
                .where(_STATES.c.endpoint == endpoint)
                .values(state=merged, updated_at=now)
            )
            return merged

    def record_decisions(self, rows: Sequence[tuple[str, str, str, datetime]]) -> None:
        """Store (request_id, endpoint, arm, time) of bandit requests in one batch; an id
        already recorded keeps its first arm."""
        values = [
            {
                "request_id": _request_id(request_id, endpoint),
                "endpoint": check_name(endpoint, kind="endpoint"),
                "arm": check_name(arm, kind="deployment arm"),
                "time": time,
            }
            for request_id, endpoint, arm, time in rows
        ]
        if not values:
            return
        with self._db.write() as session:
            statement = dialect_insert(session)(_DECISIONS).on_conflict_do_nothing(
                index_elements=["request_id"]
            )
            session.connection().execute(statement, values)

    def find_decisions(self, request_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """``{request_id: (endpoint, arm)}`` of those ids that were recorded."""
        ids = list(dict.fromkeys(request_ids))
        query = select(_DECISIONS.c.request_id, _DECISIONS.c.endpoint, _DECISIONS.c.arm)
        found: dict[str, tuple[str, str]] = {}
        with self._db.session() as session:
            conn = session.connection()
            for start in range(0, len(ids), _CHUNK):
                chunk = query.where(_DECISIONS.c.request_id.in_(ids[start : start + _CHUNK]))
                for request_id, endpoint, arm in conn.execute(chunk):
                    found[request_id] = (endpoint, arm)
        return found

    def prune_decisions(self, before: datetime) -> int:
        """Forget the decisions made before ``before``; returns how many were removed."""
        with self._db.write() as session:
            statement = delete(_DECISIONS).where(_DECISIONS.c.time < before)
            return session.connection().execute(statement).rowcount


def _request_id(request_id: str, endpoint: str) -> str:
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 128:
        raise DefinitionError(
            f"bandit decision of endpoint {endpoint!r}: request_id must be a string of 1 "
            f"to 128 characters, got {request_id!r}"
        )
    return request_id
