"""Alembic environment: delegates to :func:`prodml.storage._migrate.run_migrations`.

Alembic executes this file during :meth:`prodml.storage.MetadataDB.open`. Imported any
other way (for instance by doctest collection) it does nothing.
"""

from __future__ import annotations

from alembic import context

from prodml.storage._migrate import run_migrations

if hasattr(context, "config"):  # set only while Alembic runs this environment
    run_migrations(context.config)
