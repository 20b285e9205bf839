"""Serving test projects: a LogisticRegression on 20 numeric features registered
directly (fast), models that fail in each way a challenger can, and a running server
process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from sklearn.linear_model import LogisticRegression

from prodml import Project
from prodml.registry import DeploymentSpec, ModelVersion, infer_signature
from prodml.validation import profile

FEATURES = [f"f{i}" for i in range(20)]
TESTS_DIR = Path(__file__).resolve().parent


def numeric_data(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    logits = X["f0"] * 1.5 - X["f1"] + 0.5 * X["f2"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y


def register(
    project: Project, model: Any, X: pd.DataFrame, *, name: str = "lr", format: str | None = None
) -> ModelVersion:
    """Register ``model`` with a signature inferred on ``X`` and the profile of ``X``."""
    sample = X.head(5)
    version = project.registry.register(
        name,
        model,
        signature=infer_signature(sample, np.zeros(len(sample))),
        profile=orjson.loads(profile(pa.Table.from_pandas(X, preserve_index=False)).to_json()),
        format=format,
        actor="test",
    )
    project.registry.approve(version.ref, actor="test", reason="test")
    return version


def lr_model(C: float = 1.0, seed: int = 0) -> tuple[LogisticRegression, pd.DataFrame]:
    X, y = numeric_data(seed=seed)
    return LogisticRegression(C=C).fit(X, y), X


class RaisingModel:
    """A challenger that raises on every call."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("boom")

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("boom")


class HangingModel:
    """A challenger that takes ``delay_s`` per call."""

    classes_ = np.array([0, 1])

    def __init__(self, delay_s: float = 2.0) -> None:
        self.delay_s = delay_s

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        time.sleep(self.delay_s)
        return np.tile([0.5, 0.5], (len(X), 1))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X)[:, 1]


class GarbageModel:
    """A challenger that returns NaN scores and the wrong number of rows."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.full((len(X) + 1, 2), np.nan)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X) + 1, np.nan)


class OverflowModel:
    """Answers NaN for rows with any value beyond ±100 (as a model overflowing would)."""

    classes_ = np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        wild = (np.abs(np.asarray(X, dtype=float)) > 100).any(axis=1)
        p = np.where(wild, np.nan, 0.5)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X)[:, 1]


class FlakyModel:
    """Raises while the file ``switch`` exists, then answers 0.25."""

    classes_ = np.array([0, 1])

    def __init__(self, switch: str) -> None:
        self.switch = switch

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if os.path.exists(self.switch):
            raise RuntimeError("flaky")
        return np.tile([0.75, 0.25], (len(X), 1))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X)[:, 1]


# Tests not about timeouts give arms this long: a busy CI machine can stall a process
# for over the default 1 s, which would turn an unrelated test's request into a 503.
PATIENT_MS = 30_000.0


def serving_project(root: Path, *, config: str = "") -> tuple[Project, ModelVersion]:
    """A project with ``lr:1`` registered, approved and deployed on endpoint ``lr``."""
    project = Project.init(root, name="serving")
    if config:
        with (root / "prodml.toml").open("a") as f:
            f.write("\n" + config)
        project.close()
        project = Project.open(root)
    model, X = lr_model()
    version = register(project, model, X)
    project.deployments.deploy(
        "lr", DeploymentSpec.single(version.ref, timeout_ms=PATIENT_MS), actor="test"
    )
    return project, version


def canary_project(root: Path, *, config: str = "") -> tuple[Project, ModelVersion]:
    """:func:`serving_project`, then ``lr:2`` registered and approved, and endpoint ``lr``
    a 10% canary of it (revision 2); returns the project and ``lr:2``."""
    project, champion = serving_project(root, config=config)
    model, X = lr_model(C=0.1, seed=1)
    challenger = register(project, model, X)
    spec = DeploymentSpec.canary(champion.ref, challenger.ref, weight=0.1, timeout_ms=PATIENT_MS)
    project.deployments.deploy("lr", spec, actor="test")
    return project, challenger


def row(seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {
        name: float(v) for name, v in zip(FEATURES, rng.normal(size=len(FEATURES)), strict=True)
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``prodml serve`` in a child process on 127.0.0.1."""

    def __init__(
        self, project: Path, *, workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "prodml.cli", "serve", "-p", str(project),
            "--port", str(self.port), "--workers", str(workers), "--log-level", "warning",
        ]  # fmt: skip
        environ = {**os.environ, "PYTHONPATH": str(TESTS_DIR), **(env or {})}
        self.process = subprocess.Popen(
            command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.output: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "server exited:\n" + b"".join(self.output).decode(errors="replace")
                )
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server not ready:\n" + b"".join(self.output).decode(errors="replace"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; the exit status (uvicorn re-raises the signal it shut
        down on, so a graceful SIGTERM exit is ``-SIGTERM``)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self._reader.join(5)
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()
        return code


@contextmanager
def running_server(project: Path, **options: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(project, **options)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


ProjectFactory = Callable[..., tuple[Project, ModelVersion]]
"""The ``make_project`` fixture (tests/serving/conftest.py): ``serving_project`` in a
fresh directory per call, closed after the test."""


def v2_body(values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A one-row V2 infer body over ``FEATURES`` (one FP64 tensor each)."""
    inputs = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [values[name]]}
        for name in FEATURES
    ]
    return {"inputs": inputs, **extra}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: The bearer token of each role in the test projects, and who holds it.
TOKEN = {role: f"{role}-token-0123456789" for role in ("labeler", "viewer", "operator", "admin")}
_HOLDER = {"labeler": "lea", "viewer": "ana", "operator": "olga", "admin": "adam"}


def tokens_toml(*roles: str) -> str:
    """``[[serving.tokens]]`` entries of :data:`TOKEN` for ``roles``, to append to a
    project's config (after its ``[serving]`` table, if any)."""
    return "".join(
        f'\n[[serving.tokens]]\nname = "{_HOLDER[role]}"\nrole = "{role}"\ntoken = "{TOKEN[role]}"\n'
        for role in roles
    )
