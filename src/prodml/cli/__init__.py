"""The ``prodml`` command line."""

from __future__ import annotations

from prodml.cli._app import app, main

__all__ = ["app", "main"]
