"""``RolloutStore``: each endpoint's rollout plan, the controller's state of it, and the
decisions of its passes, in the metadata DB.

Plans, states and evidence are JSON dicts; the controller defines what they hold. A
plan row's ``version`` grows by one with every write, so :meth:`RolloutStore.update`
refuses (:class:`ConflictError`) a state computed from a row that changed since it was
read. Every write method takes the ``session`` of a transaction to write in — the one a
:class:`~prodml.registry.DeploymentStore` change passes its ``within`` hook, so the plan
and the decision commit or roll back with the deployment change — or ``None`` to write
in a transaction of its own.

>>> from datetime import UTC, datetime
>>> from prodml.core import SimulatedClock
>>> from prodml.storage import MetadataDB
>>> db = MetadataDB.open("sqlite://")
>>> store = RolloutStore(db, SimulatedClock(datetime(2013, 7, 1, tzinfo=UTC)))
>>> store.save(None, "delay", {"steps": [0.05, 0.25]}, {"step": 0}, "active", "ana").version
1
>>> store.update(None, "delay", {"step": 1}, "active", expected_version=1).state
{'step': 1}
>>> _ = store.add_decision(None, "delay", "advance", step=1, revision=3, actor="ctl",
...                        reason="bake time over", evidence={"n": 1200})
>>> [(d["decision"], d["step"], d["evidence"]) for d in store.decisions("delay")]
[('advance', 1, {'n': 1200})]
>>> db.close()
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from prodml.core import (
    Clock,
    ConflictError,
    DefinitionError,
    NotFoundError,
    check_name,
    json_mapping,
)
from prodml.storage import Base, MetadataDB, RolloutPlanRow

__all__ = ["PlanRecord", "RolloutStore"]

_PLANS = Base.metadata.tables["rollout_plans"]
_DECISIONS = Base.metadata.tables["rollout_decisions"]
_STATUS_MAX = 24
_DECISION_MAX = 16
_ACTOR_MAX = 128


@dataclass(frozen=True)
class PlanRecord:
    """An endpoint's stored plan, the controller's state and status, and its version."""

    endpoint: str
    plan: dict[str, Any]
    state: dict[str, Any]
    status: str
    version: int
    created_at: datetime
    created_by: str
    updated_at: datetime


class RolloutStore:
    """Rollout plans and decisions of every endpoint (see the module doc)."""

    def __init__(self, db: MetadataDB, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # --- plans ------------------------------------------------------------------------
    def get(self, endpoint: str) -> PlanRecord | None:
        """``endpoint``'s plan, or ``None`` if it has none."""
        with self._db.session() as session:
            row = session.get(RolloutPlanRow, endpoint)
            return None if row is None else _record(row)

    def list(self) -> builtins.list[PlanRecord]:
        """Every plan, sorted by endpoint."""
        with self._db.session() as session:
            rows = session.scalars(select(RolloutPlanRow).order_by(RolloutPlanRow.endpoint))
            return [_record(row) for row in rows]

    def save(
        self,
        session: Session | None,
        endpoint: str,
        plan: Mapping[str, Any],
        state: Mapping[str, Any],
        status: str,
        actor: str,
    ) -> PlanRecord:
        """Create ``endpoint``'s plan, or replace it with a new one (created now by
        ``actor``); either way its version grows by one (a new plan starts at 1)."""
        check_name(endpoint, kind="endpoint")
        values = {
            "endpoint": endpoint,
            "plan": _json(endpoint, "plan", plan),
            "state": _json(endpoint, "state", state),
            "status": _text(endpoint, "status", status, _STATUS_MAX),
            "created_by": _text(endpoint, "actor", actor, _ACTOR_MAX),
        }
        now = self._clock.now()
        with self._writing(session) as s:
            query = select(RolloutPlanRow).where(RolloutPlanRow.endpoint == endpoint)
            query = query.with_for_update().execution_options(populate_existing=True)
            row = s.scalars(query).one_or_none()
            if row is None:
                row = RolloutPlanRow(**values, version=1, created_at=now, updated_at=now)
                s.add(row)
            else:
                for key, value in values.items():
                    setattr(row, key, value)
                row.version, row.created_at, row.updated_at = row.version + 1, now, now
            s.flush()
            return _record(row)

    def update(
        self,
        session: Session | None,
        endpoint: str,
        state: Mapping[str, Any],
        status: str,
        expected_version: int,
    ) -> PlanRecord:
        """Replace the state and status of ``endpoint``'s plan if it is still at
        ``expected_version`` (:class:`ConflictError` otherwise: re-read it and retry)."""
        values = {
            "state": _json(endpoint, "state", state),
            "status": _text(endpoint, "status", status, _STATUS_MAX),
        }
        statement = (
            update(_PLANS)
            .where(_PLANS.c.endpoint == endpoint, _PLANS.c.version == expected_version)
            .values(**values, version=_PLANS.c.version + 1, updated_at=self._clock.now())
            .returning(*_PLANS.c)
        )
        with self._writing(session) as s:
            found = s.connection().execute(statement).mappings().one_or_none()
            if found is None:
                current = s.get(RolloutPlanRow, endpoint, populate_existing=True)
                if current is None:
                    raise NotFoundError(_missing(s, endpoint))
                raise ConflictError(
                    f"rollout plan of {endpoint!r}: version is {current.version}, expected "
                    f"{expected_version} (changed since it was read); re-read it and retry"
                )
            return PlanRecord(**found)

    # --- decisions ----------------------------------------------------------------------
    def add_decision(
        self,
        session: Session | None,
        endpoint: str,
        decision: str,
        *,
        step: int | None,
        revision: int | None,
        actor: str,
        reason: str | None,
        evidence: Mapping[str, Any],
        time: datetime | None = None,
    ) -> int:
        """Append one decision of ``endpoint``'s rollout (``revision``: the deployment
        revision it wrote, if any; ``time`` defaults to now); returns its id."""
        check_name(endpoint, kind="endpoint")
        for field, number in (("step", step), ("revision", revision)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise DefinitionError(
                    f"rollout decision of {endpoint!r}: {field} must be an integer or None, "
                    f"got {number!r}"
                )
        values = {
            "endpoint": endpoint,
            "time": self._clock.now() if time is None else time,
            "decision": _text(endpoint, "decision", decision, _DECISION_MAX),
            "step": step,
            "revision": revision,
            "actor": _text(endpoint, "actor", actor, _ACTOR_MAX),
            "reason": reason,
            "evidence": _json(endpoint, "evidence", evidence),
        }
        statement = insert(_DECISIONS).values(**values).returning(_DECISIONS.c.id)
        with self._writing(session) as s:
            new_id: int = s.connection().execute(statement).scalar_one()
            return new_id

    def decisions(self, endpoint: str, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """``endpoint``'s decisions in the order they were written, newest last (only
        the newest ``limit`` when given)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise DefinitionError(f"decisions of {endpoint!r}: limit must be an integer >= 0")
        if limit is not None and limit < 0:
            raise DefinitionError(
                f"decisions of {endpoint!r}: limit must be an integer >= 0, got {limit}"
            )
        query = (
            select(_DECISIONS)
            .where(_DECISIONS.c.endpoint == endpoint)
            .order_by(_DECISIONS.c.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self._db.session() as session:
            rows = session.connection().execute(query).mappings().all()
        return [dict(row) for row in reversed(rows)]

    def last_decision(self, endpoint: str) -> dict[str, Any] | None:
        """``endpoint``'s latest decision, or ``None``."""
        found = self.decisions(endpoint, limit=1)
        return found[0] if found else None

    @contextlib.contextmanager
    def _writing(self, session: Session | None) -> Iterator[Session]:
        """``session``, or a write transaction of our own when it is ``None``."""
        if session is not None:
            yield session
            return
        with self._db.write() as own:
            yield own


def _record(row: RolloutPlanRow) -> PlanRecord:
    return PlanRecord(
        row.endpoint,
        dict(row.plan),
        dict(row.state),
        row.status,
        row.version,
        row.created_at,
        row.created_by,
        row.updated_at,
    )


def _missing(session: Session, endpoint: str) -> str:
    known = session.scalars(select(RolloutPlanRow.endpoint).order_by(RolloutPlanRow.endpoint))
    return f"endpoint {endpoint!r} has no rollout plan; endpoints with one: {known.all()}"


def _json(endpoint: str, field: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` as a dict of JSON data, checked now rather than by the database."""
    return json_mapping(value, owner=f"rollout plan of {endpoint!r}", field=field)


def _text(endpoint: str, field: str, value: str, longest: int) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= longest:
        raise DefinitionError(
            f"rollout plan of {endpoint!r}: {field} must be a string of 1 to {longest} "
            f"characters, got {value!r}"
        )
    return value
