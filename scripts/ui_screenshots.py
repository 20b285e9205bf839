"""Regenerate the dashboard screenshots under ``docs/screenshots/``.

A copy of a demo project (``--project DIR``, else one built with ``prodml demo`` in a
temporary directory) gets an operator token; ``prodml ui`` serves it on a free port;
headless Chromium (Playwright) signs in and shoots each page at 1280×900:
overview, endpoint, model, lineage (of the champion), monitoring, features, retraining.

    python scripts/ui_screenshots.py --project /tmp/demo-ui
    python scripts/ui_screenshots.py                  # builds the demo first (a few minutes)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "operator-token-0123456789"
TOKENS = f'\n[[serving.tokens]]\nname = "screenshots"\nrole = "operator"\ntoken = "{TOKEN}"\n'
VIEWPORT = {"width": 1280, "height": 900}


def prodml_command() -> list[str]:
    """The ``prodml`` command of this interpreter's environment."""
    return [sys.executable, "-m", "prodml.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(project: Path | None, workdir: Path) -> Path:
    """A copy of ``project`` (built with ``prodml demo`` when None) with the token."""
    if project is None:
        built = workdir / "demo"
        subprocess.run([*prodml_command(), "demo", "--dir", str(built)], check=True)
        project = built
    copy = workdir / "project"
    shutil.copytree(project, copy)
    with (copy / "prodml.toml").open("a") as f:
        f.write(TOKENS)
    return copy


@contextmanager
def dashboard(project: Path, timeout: float = 120.0) -> Iterator[str]:
    """``prodml ui`` on a free loopback port; yields its base URL once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*prodml_command(), "ui", "-p", str(project), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                raise RuntimeError(f"prodml ui exited ({process.returncode}):\n{output}")
            try:
                with urllib.request.urlopen(url + "/ui/login", timeout=2.0) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prodml ui did not answer on {url} within {timeout} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def pages(project: Path) -> dict[str, str]:
    """Screenshot name → dashboard path, for the project's first endpoint."""
    from prodml import Project

    with Project.open(project) as opened:
        deployments = opened.deployments.list()
        if not deployments:
            raise SystemExit(f"{project}: nothing is deployed")
        deployment = deployments[0]
        endpoint = deployment.endpoint
        champion = deployment.spec.champion or deployment.spec.arms[0]
        model, version = champion.model.rsplit(":", 1)
    return {
        "overview": "/ui",
        "endpoint": f"/ui/endpoints/{endpoint}",
        "model": f"/ui/models/{model}",
        "lineage": f"/ui/models/{model}/{version}/lineage",
        "monitoring": f"/ui/monitoring/{endpoint}",
        "features": "/ui/features",
        "retraining": "/ui/retraining",
    }


def shoot(url: str, targets: dict[str, str], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            page.goto(url + "/ui/login")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/ui")
            for name, path in targets.items():
                answer = page.goto(url + path, wait_until="load")
                if answer is None or answer.status != 200:
                    status = None if answer is None else answer.status
                    raise RuntimeError(f"{path}: HTTP {status}")
                page.wait_for_selector("h1")
                target = out / f"{name}.png"
                page.screenshot(path=str(target))
                written.append(target)
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, help="a built demo project (copied)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing")
    with tempfile.TemporaryDirectory(prefix="prodml-ui-shots-") as tmp:
        copy = prepare(args.project, Path(tmp))
        targets = pages(copy)
        with dashboard(copy) as url:
            for path in shoot(url, targets, args.out):
                print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
