"""Page-load time of the dashboard in a real browser (headless Chromium, Playwright).

A copy of a demo project (``--project DIR``, else one built with ``prodml demo`` in a
temporary directory) gets an operator token and is served by ``prodml ui`` on a free
port; a signed-in page loads each dashboard page once untimed, then N times
(``page.goto(..., wait_until="load")``). For each page the benchmark prints the p50 and
p95 of the wall time around ``goto`` (``time.perf_counter``) and of the Navigation
Timing ``loadEventEnd``, and whether the wall-time p95 meets the 300 ms target; then the
machine's load average. The last stdout line is one JSON object with the figures.

    python benchmarks/ui_page_load.py --project /tmp/demo-ui       # 20 loads per page
    python benchmarks/ui_page_load.py --project /tmp/demo-ui -n 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

# the screenshot script's server set-up
from ui_screenshots import (
    CHROMIUM,
    LAUNCH_ARGS,
    TOKEN,
    VIEWPORT,
    dashboard,
    pages,
    prepare,
)

TARGET_MS = 300.0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure(url: str, targets: dict[str, str], runs: int) -> dict[str, dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, dict[str, Any]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(url + "/ui/login")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/ui")
            for name, path in targets.items():
                page.goto(url + path, wait_until="load")  # warm-up, untimed
                wall: list[float] = []
                navigation: list[float] = []
                for _ in range(runs):
                    start = time.perf_counter()
                    answer = page.goto(url + path, wait_until="load")
                    wall.append((time.perf_counter() - start) * 1000.0)
                    if answer is None or answer.status != 200:
                        raise RuntimeError(
                            f"{path}: HTTP {None if answer is None else answer.status}"
                        )
                    navigation.append(
                        float(
                            page.evaluate(
                                "performance.getEntriesByType('navigation')[0].loadEventEnd"
                            )
                        )
                    )
                figures[name] = {
                    "path": path,
                    "runs": runs,
                    "wall_p50_ms": round(percentile(wall, 0.5), 1),
                    "wall_p95_ms": round(percentile(wall, 0.95), 1),
                    "load_event_p50_ms": round(percentile(navigation, 0.5), 1),
                    "load_event_p95_ms": round(percentile(navigation, 0.95), 1),
                    "wall_mean_ms": round(statistics.fmean(wall), 1),
                    "meets_target": percentile(wall, 0.95) <= TARGET_MS,
                }
        finally:
            browser.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a built demo project (copied)")
    parser.add_argument("-n", "--runs", type=int, default=20, help="timed loads per page")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing")
    with tempfile.TemporaryDirectory(prefix="prodml-ui-bench-") as tmp:
        copy = prepare(args.project, Path(tmp))
        targets = pages(copy)
        with dashboard(copy) as url:
            figures = measure(url, targets, args.runs)
    load = os.getloadavg()
    print(
        f"{'page':<12} {'wall p50':>9} {'wall p95':>9} {'load p50':>9} {'load p95':>9}  p95 ≤ 300 ms"
    )
    for name, f in figures.items():
        print(
            f"{name:<12} {f['wall_p50_ms']:>7.1f}ms {f['wall_p95_ms']:>7.1f}ms "
            f"{f['load_event_p50_ms']:>7.1f}ms {f['load_event_p95_ms']:>7.1f}ms  "
            f"{'yes' if f['meets_target'] else 'NO'}"
        )
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")
    summary = {
        "benchmark": "ui_page_load",
        "target_p95_ms": TARGET_MS,
        "runs": args.runs,
        "pages": figures,
        "all_meet_target": all(f["meets_target"] for f in figures.values()),
        "loadavg": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
