"""Alembic migration scripts of the metadata DB, run by :func:`prodml.storage.MetadataDB.open`."""

from __future__ import annotations
