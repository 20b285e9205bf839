"""What a run ran on: the Python environment and the state of the code.

The environment is every installed distribution with its exact version; the code is
the git commit, whether the tree was dirty and a SHA-256 of the uncommitted diff (so
two dirty runs on the same commit can still be told apart).

>>> env = capture_environment()
>>> env["python"].count(".") == 2 and "numpy" in env["packages"]
True
>>> diff_environments({"python": "3.11.7", "packages": {"numpy": "2.0", "a": "1"}},
...                   {"python": "3.11.7", "packages": {"numpy": "2.1", "b": "1"}})
['package a: 1 → missing', 'package b: missing → 1', 'package numpy: 2.0 → 2.1']
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["capture_code", "capture_environment", "diff_code", "diff_environments"]

_GIT_TIMEOUT_S = 10


def capture_environment() -> dict[str, Any]:
    """Python version, platform and every installed package's exact version."""
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "packages": dict(_packages()),
    }


@functools.lru_cache(maxsize=1)
def _packages() -> tuple[tuple[str, str], ...]:
    # Scanning site-packages costs tens of ms; the set of installed packages of a
    # running process is taken once.
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[_normalise(name)] = dist.version
    return tuple(sorted(found.items()))


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def capture_code(directory: str | Path) -> dict[str, Any]:
    """The git state of ``directory``: commit, dirty flag, SHA-256 of the uncommitted diff.

    Outside a git work tree (or without git) the commit is ``None``.
    """
    directory = Path(directory)
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff_sha256": None, "branch": None}
    status = _git(directory, "status", "--porcelain", "--untracked-files=normal") or ""
    diff = _git_bytes(directory, "diff", "HEAD", "--binary") or b""
    untracked = _git(directory, "ls-files", "--others", "--exclude-standard") or ""
    digest = hashlib.sha256(diff)
    for name in sorted(untracked.splitlines()):
        path = directory / name
        digest.update(name.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    dirty = bool(status.strip())
    return {
        "commit": commit,
        "dirty": dirty,
        "diff_sha256": digest.hexdigest() if dirty else None,
        "branch": _git(directory, "rev-parse", "--abbrev-ref", "HEAD"),
    }


def _git(directory: Path, *args: str) -> str | None:
    out = _git_bytes(directory, *args)
    return None if out is None else out.decode("utf-8", "replace").strip()


def _git_bytes(directory: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def diff_environments(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two captured environments."""
    out: list[str] = []
    if recorded.get("python") != current.get("python"):
        out.append(f"python: {recorded.get('python')} → {current.get('python')}")
    old: dict[str, str] = recorded.get("packages", {})
    new: dict[str, str] = current.get("packages", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            out.append(f"package {name}: {old.get(name, 'missing')} → {new.get(name, 'missing')}")
    return out


def diff_code(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two captured code states."""
    out: list[str] = []
    for key in ("commit", "dirty", "diff_sha256"):
        if recorded.get(key) != current.get(key):
            out.append(f"code {key}: {recorded.get(key)} → {current.get(key)}")
    return out
