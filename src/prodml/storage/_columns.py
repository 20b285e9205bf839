"""Column types shared by the metadata models.

:class:`UTCDateTime` stores timezone-aware UTC datetimes the same way on every
database: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite (which has no time
zones); either way a read returns an aware UTC datetime. Naive inputs are taken as UTC,
like :func:`prodml.core.ensure_utc`.

>>> from datetime import datetime, timedelta, timezone
>>> from sqlalchemy.dialects import sqlite
>>> col = UTCDateTime()
>>> paris = datetime(2013, 7, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
>>> col.process_bind_param(paris, sqlite.dialect())
datetime.datetime(2013, 7, 1, 12, 0)
>>> col.process_result_value(datetime(2013, 7, 1, 12, 0), sqlite.dialect()).isoformat()
'2013-07-01T12:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from prodml.core import ensure_utc

__all__ = ["UTCDateTime"]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` column that round-trips on SQLite and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"UTCDateTime: expected a datetime, got {type(value).__name__}")
        aware = ensure_utc(value)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
