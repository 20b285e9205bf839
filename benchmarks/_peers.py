"""Peer tools measured by the benchmarks, each installed in its own virtual environment.

A peer (Feast, MLflow, Evidently…) is never a dependency of prodml: the benchmark
creates ``benchmarks/.venvs/<name>`` on first use, installs the pinned requirement
there, and runs a small script in that interpreter, reading back one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

VENVS = Path(__file__).resolve().parent / ".venvs"


def peer_python(name: str, requirements: list[str]) -> Path:
    """Return the interpreter of the peer's venv, creating and installing it if needed."""
    root = VENVS / name
    python = root / "bin" / "python"
    marker = root / ".installed"
    wanted = "\n".join(sorted(requirements))
    if marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        print(f"[peer] creating virtual environment for {name} in {root}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=True).create(root)
    print(f"[peer] installing {' '.join(requirements)} (first run only)", file=sys.stderr)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        check=True,
    )
    marker.write_text(wanted)
    return python


def peer_env() -> dict[str, str]:
    """This process's environment without ``PYTHON*`` variables (they would point a
    peer's interpreter at our packages)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def run_json(
    command: list[str],
    *,
    what: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Run ``command`` and return the JSON object it prints as its last stdout line."""
    proc = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{what} printed nothing; stderr:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_peer(
    python: Path, script: str, payload: dict[str, Any], *, timeout: float = 3600
) -> dict[str, Any]:
    """Run ``script`` (Python source) in the peer interpreter with ``payload`` as JSON on
    stdin; the script prints one JSON object as its last stdout line."""
    return run_json(
        [str(python), "-c", script],
        what="peer script",
        stdin=json.dumps(payload),
        env=peer_env(),
        timeout=timeout,
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` of /proc/self/status, which
    exec resets (Linux ``ru_maxrss`` survives exec: a child would report at least its
    parent's resident memory at fork); ``ru_maxrss`` where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
