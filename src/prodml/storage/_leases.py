"""Named leases in the metadata DB, so that one controller of each kind acts at a time.

A lease is a row (name, holder, acquired_at, expires_at). :meth:`Lease.acquire` takes it
in one ``INSERT … ON CONFLICT DO UPDATE … WHERE`` statement — the row is free, expired or
already ours — and reads back who holds it from the statement itself (``RETURNING``):
the database serializes racing statements on the row (SQLite's write lock, PostgreSQL's
row lock), so two processes never both hold it. A holder that stops renewing loses the
lease when it expires; time is the caller's :class:`~prodml.core.Clock`, so every
process sharing a lease must share a clock (the wall clock, or one simulated clock).

>>> from datetime import UTC, datetime, timedelta
>>> from prodml.core import SimulatedClock
>>> from prodml.storage._metadata import MetadataDB
>>> db, clock = MetadataDB.open("sqlite://"), SimulatedClock(datetime(2013, 1, 1, tzinfo=UTC))
>>> ours = Lease(db, "rollout", "host-a:41", ttl_s=60, clock=clock)
>>> theirs = Lease(db, "rollout", "host-b:7", ttl_s=60, clock=clock)
>>> ours.acquire(), theirs.acquire(), ours.acquire()
(True, False, True)
>>> _ = clock.advance(timedelta(seconds=61))  # ours expired without a renew
>>> ours.renew(), theirs.acquire(), theirs.current().holder
(False, True, 'host-b:7')
>>> db.close()
"""

from __future__ import annotations

import importlib
import math
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import and_, case, delete, or_, select, update

from prodml.core import Clock, DefinitionError, StateError, check_name
from prodml.storage._metadata import MetadataDB
from prodml.storage._models import Base, ControllerLeaseRow

__all__ = ["Lease", "LeaseInfo", "default_holder"]

_TABLE = Base.metadata.tables["controller_leases"]
_HOLDER_MAX = 128


def default_holder() -> str:
    """A process-unique lease holder: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease, since when and until when."""

    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime


class Lease:
    """The lease ``name`` as seen by ``holder`` (a process-unique string, e.g.
    ``host:pid:random``), held ``ttl_s`` seconds after each :meth:`acquire` or
    :meth:`renew`. As a context manager it acquires on entry (:class:`StateError` if
    someone else holds it) and releases on exit."""

    def __init__(
        self, db: MetadataDB, name: str, holder: str, *, ttl_s: float, clock: Clock
    ) -> None:
        self._db = db
        self.name = check_name(name, kind="lease")
        self.holder = _check_holder(name, holder)
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
            raise DefinitionError(f"lease {name!r}: ttl_s must be a number, got {ttl_s!r}")
        if not math.isfinite(ttl_s) or ttl_s <= 0:
            raise DefinitionError(
                f"lease {name!r}: ttl_s must be a finite number of seconds > 0, got {ttl_s!r}"
            )
        self.ttl = timedelta(seconds=float(ttl_s))
        self._clock = clock

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, holder={self.holder!r}, ttl_s={self.ttl.total_seconds()})"

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours (then extend it);
        ``True`` if we hold it afterwards. One atomic statement."""
        now = self._clock.now()
        with self._db.write() as session:
            upsert = _upsert(session.get_bind().dialect.name)
            ours = _TABLE.c.holder == self.holder
            statement = (
                upsert.values(
                    name=self.name,
                    holder=self.holder,
                    acquired_at=now,
                    expires_at=now + self.ttl,
                )
                .on_conflict_do_update(
                    index_elements=[_TABLE.c.name],
                    set_={
                        "holder": upsert.excluded.holder,
                        "acquired_at": case(
                            (ours, _TABLE.c.acquired_at), else_=upsert.excluded.acquired_at
                        ),
                        "expires_at": upsert.excluded.expires_at,
                    },
                    where=or_(ours, _TABLE.c.expires_at <= now),
                )
                .returning(_TABLE.c.holder)
            )
            holder = session.connection().execute(statement).scalar_one_or_none()
        return holder == self.holder

    def renew(self) -> bool:
        """Extend the lease by ``ttl_s`` from now if we still hold it (not expired);
        ``False`` means it was lost: stop acting, and :meth:`acquire` again."""
        now = self._clock.now()
        statement = (
            update(_TABLE)
            .where(
                _TABLE.c.name == self.name,
                _TABLE.c.holder == self.holder,
                _TABLE.c.expires_at > now,
            )
            .values(expires_at=now + self.ttl)
        )
        with self._db.write() as session:
            return session.connection().execute(statement).rowcount == 1

    def release(self) -> None:
        """Give the lease up if we hold it (a no-op otherwise)."""
        statement = delete(_TABLE).where(
            and_(_TABLE.c.name == self.name, _TABLE.c.holder == self.holder)
        )
        with self._db.write() as session:
            session.connection().execute(statement)

    def current(self) -> LeaseInfo | None:
        """Who holds the lease now (``None``: nobody, or the last holder's expired)."""
        now = self._clock.now()
        query = select(ControllerLeaseRow).where(ControllerLeaseRow.name == self.name)
        with self._db.session() as session:
            row = session.scalars(query).one_or_none()
            if row is None or row.expires_at <= now:
                return None
            return LeaseInfo(row.name, row.holder, row.acquired_at, row.expires_at)

    def __enter__(self) -> Lease:
        if not self.acquire():
            held = self.current()
            by = f"{held.holder} until {held.expires_at:%Y-%m-%d %H:%M:%S}" if held else "another"
            raise StateError(
                f"lease {self.name!r} is held by {by}; expected it free for holder "
                f"{self.holder!r} (one controller of each kind acts at a time)"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _upsert(dialect: str) -> Any:
    """``INSERT`` with ``ON CONFLICT`` for the dialect (only that dialect's module loads)."""
    module = "postgresql" if dialect == "postgresql" else "sqlite"
    return importlib.import_module(f"sqlalchemy.dialects.{module}").insert(_TABLE)


def _check_holder(name: str, holder: str) -> str:
    if (
        not isinstance(holder, str)
        or not 0 < len(holder) <= _HOLDER_MAX
        or holder != holder.strip()
        or not holder.isprintable()
    ):
        raise DefinitionError(
            f"lease {name!r}: holder must be a printable string of 1 to {_HOLDER_MAX} "
            f"characters without surrounding spaces, got {holder!r}"
        )
    return holder
