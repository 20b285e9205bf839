"""Start-up time of the command line: ``prodml --help`` and ``prodml models list``.

Each command runs as a fresh subprocess (the console script beside this interpreter),
first once untimed to warm the file cache, then N times; the benchmark prints the
minimum and median wall time of each, the median CPU time of the child, and whether the
median meets the 0.5 s target. ``models list`` runs against a project: by default the
demo project under ``benchmarks/.data/flights-demo`` (built with ``prodml demo`` on
first use, about a minute), or ``--project DIR``. The last stdout line is one JSON
object with the figures.

    python benchmarks/cli_startup.py                 # 10 runs of each command
    python benchmarks/cli_startup.py --quick         # 3 runs
    python benchmarks/cli_startup.py --project DIR   # models list against DIR

To compare with another checkout, point ``PYTHONPATH`` at its ``src``: the figures name
the ``prodml`` package the children imported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_S = 0.5
DEMO = Path(__file__).resolve().parent / ".data" / "flights-demo"


def prodml_command() -> list[str]:
    """The ``prodml`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "prodml"
    if script.exists():
        return [str(script)]
    found = shutil.which("prodml")
    if found is None:
        raise SystemExit("no `prodml` console script: install the package (pip install -e .)")
    return [found]


def demo_project(path: Path) -> Path:
    """The demo project at ``path``, built with ``prodml demo`` when it is not there."""
    if (path / "prodml.toml").is_file():
        return path
    print(f"building the demo project in {path} (about a minute, first run only)", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*prodml_command(), "demo", "--dir", str(path), "--json"], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return path


def time_command(command: list[str], runs: int) -> dict[str, Any]:
    """Wall and CPU seconds of ``runs`` fresh runs of ``command`` (after one warm-up)."""
    subprocess.run(command, check=True, capture_output=True)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if proc.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} failed (exit {proc.returncode}):\n"
                + proc.stderr.decode(errors="replace")[-4000:]
            )
    median = statistics.median(walls)
    return {
        "min_s": round(min(walls), 3),
        "median_s": round(median, 3),
        "cpu_median_s": round(statistics.median(cpus), 3),
        "meets_target": median <= TARGET_S,
    }


def imported_package() -> str:
    """Where the children import ``prodml`` from (this checkout or ``PYTHONPATH``'s)."""
    return subprocess.run(
        [sys.executable, "-c", "import prodml; print(prodml.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each instead of 10")
    parser.add_argument(
        "--project", type=Path, default=None, help=f"project for `models list` (default {DEMO})"
    )
    args = parser.parse_args()
    runs = 3 if args.quick else 10
    project = args.project.resolve() if args.project else demo_project(DEMO)
    if not (project / "prodml.toml").is_file():
        raise SystemExit(f"--project {str(project)!r}: no prodml.toml there")

    prodml = prodml_command()
    commands = {
        "help": [*prodml, "--help"],
        "models_list": [*prodml, "models", "list", "--project", str(project)],
    }
    figures: dict[str, Any] = {
        "benchmark": "cli_startup",
        "runs": runs,
        "target_s": TARGET_S,
        "package": imported_package(),
        "project": str(project),
        "python": platform.python_version(),
    }
    for name, command in commands.items():
        result = time_command(command, runs)
        figures.update({f"{name}_{key}": value for key, value in result.items()})
        shown = "prodml " + " ".join(command[1:3])
        print(
            f"{shown:<22} min {result['min_s']:.3f} s, median {result['median_s']:.3f} s "
            f"(CPU {result['cpu_median_s']:.3f} s) — "
            + ("meets" if result["meets_target"] else "misses")
            + f" the {TARGET_S} s target"
        )
    figures["meets_target"] = figures["help_meets_target"] and figures["models_list_meets_target"]
    # A busy machine slows every child: the load says how quiet the runs were.
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
