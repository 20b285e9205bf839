"""The batching model servers ``serving.py`` measures prodml against: MLServer, BentoML
and Ray Serve.

Each runs from its own virtual environment (``_peers.peer_python``), with the same
scikit-learn version as this one, serving the same fitted estimator, written here with
``joblib`` (the format MLServer's scikit-learn runtime loads; BentoML's service loads it
with ``joblib.load`` too):

* MLServer (``mlserver start``) with its scikit-learn runtime and adaptive batching
  turned on in ``model-settings.json`` (``max_batch_size`` / ``max_batch_time``, off by
  default); ``debug`` off (its default logs every request); one inference worker
  (``parallel_workers``: its default), REST on uvicorn. Requests use the V2 inference
  protocol: ``POST /v2/models/<name>/infer`` with the row as one ``FP64`` tensor of
  shape ``[1, 20]``.
* BentoML (``bentoml serve``) with a service whose API is ``@bentoml.api(batchable=True)``
  (adaptive batching with its defaults), one worker, access log off. Requests are
  ``POST /predict`` with ``{"input": [[...20 numbers]]}``.
* Ray Serve (a local Ray with 2 CPUs, one replica taking up to 32 requests at once, its
  HTTP proxy) with a deployment
  whose rows go through ``@serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)``,
  the same batching settings as MLServer's. Requests as BentoML's, on ``/predict``.

Every one-row body carries the same 64 rows as prodml's and MLflow's bodies, in the
same order, so a load cycles over identical rows on every server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import orjson
import sklearn

from _peers import peer_env, peer_python

#: MLServer's adaptive batching: at most one request from each of the 16 connections,
#: waiting at most 2 ms for them. Tried side by side with ``--quick`` (3 rounds): 1, 2, 5
#: and 10 ms gave 514, 738, 485 and 359 req/s median at C = 16 (p50 7.9 ms at C = 1 with
#: 2 ms, 6.5 ms with 1 ms, 12-16 ms with 5-10 ms): 2 ms is its best throughput.
MLSERVER_MAX_BATCH_SIZE = 16
MLSERVER_MAX_BATCH_TIME_S = 0.002


def mlserver_requirements() -> list[str]:
    return [
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        # uvloop 0.22+ raises in get_event_loop() without a running loop, which
        # MLServer 1.7.1's inference workers call at start-up (they die at once).
        "uvloop==0.21.0",
        f"scikit-learn=={sklearn.__version__}",
    ]


def bentoml_requirements() -> list[str]:
    return ["bentoml==1.4.40", f"scikit-learn=={sklearn.__version__}"]


BENTO_SERVICE = """
import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Model:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @bentoml.api(batchable=True)
    def predict(self, input: np.ndarray) -> np.ndarray:
        return self.model.predict(input)
"""


@dataclass
class PeerSpec:
    """How to start one peer server and talk to it."""

    key: str
    name: str
    command: list[str]
    port: int
    ready: str
    env: dict[str, str]
    path: str
    bodies: list[bytes]
    batch: bytes
    parse: Callable[[bytes], list[Any]]
    version: str


def _env(python: Path, **extra: str) -> dict[str, str]:
    env = peer_env()
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env | extra


def v2_body(rows: list[list[float]], name: str) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": name, "shape": [len(rows), len(rows[0])], "datatype": "FP64", "data": rows}
            ]
        }
    )


def v2_predictions(raw: bytes) -> list[Any]:
    outputs = orjson.loads(raw)["outputs"]
    return list(outputs[0]["data"])


def bento_predictions(raw: bytes) -> list[Any]:
    return list(orjson.loads(raw))


def mlserver(
    model: Any,
    name: str,
    rows: list[list[float]],
    workdir: Path,
    port: int,
    free_port: Callable[[], int],
) -> PeerSpec:
    """A model repository holding ``model`` as ``name``, and the command serving it."""
    python = peer_python("mlserver", mlserver_requirements())
    root = workdir / "mlserver"
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "max_batch_size": MLSERVER_MAX_BATCH_SIZE,
                "max_batch_time": MLSERVER_MAX_BATCH_TIME_S,
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    (root / "settings.json").write_text(
        json.dumps(
            {
                "debug": False,
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
            }
        )
    )
    return PeerSpec(
        key="mlserver",
        name=f"MLServer (batch {MLSERVER_MAX_BATCH_SIZE}, {MLSERVER_MAX_BATCH_TIME_S * 1e3:g} ms)",
        command=[str(python.parent / "mlserver"), "start", str(root)],
        port=port,
        ready=f"/v2/models/{name}/ready",
        env=_env(python),
        path=f"/v2/models/{name}/infer",
        bodies=[v2_body([row], "input-0") for row in rows],
        batch=v2_body(rows, "input-0"),
        parse=v2_predictions,
        version="mlserver 1.7.1",
    )


def bentoml(model: Any, name: str, rows: list[list[float]], workdir: Path, port: int) -> PeerSpec:
    """A BentoML service file loading ``model``, and the command serving it."""
    python = peer_python("bentoml", bentoml_requirements())
    folder = workdir / f"bentoml-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "service.py").write_text(BENTO_SERVICE)
    return PeerSpec(
        key="bentoml",
        name="BentoML (batchable=True)",
        command=[
            str(python.parent / "bentoml"),
            "serve",
            "service:Model",
            "--working-dir",
            str(folder),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        port=port,
        ready="/readyz",
        env=_env(
            python,
            BENCH_MODEL_PATH=str(folder / "model.joblib"),
            BENTOML_DO_NOT_TRACK="True",
            BENTOML_HOME=str(workdir / "bentoml-home"),
        ),
        path="/predict",
        bodies=[orjson.dumps({"input": [row]}) for row in rows],
        batch=orjson.dumps({"input": rows}),
        parse=bento_predictions,
        version="bentoml 1.4.40",
    )


def rayserve_requirements() -> list[str]:
    return ["ray[serve]==2.60.0", f"scikit-learn=={sklearn.__version__}"]


RAY_APP = """
import asyncio
import os
import signal
import sys
import time

import joblib
import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


# max_ongoing_requests (default 5) at least the batch size, as Ray's batching guide says
@serve.deployment(num_replicas=1, max_ongoing_requests=32)
class Model:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def predict(self, rows: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(rows, dtype=np.float64)).tolist()

    async def __call__(self, request: Request) -> Response:
        if request.method == "GET":
            return Response(b"ok")
        rows = (await request.json())["input"]
        return JSONResponse(await asyncio.gather(*(self.predict(r) for r in rows)))


def stop(*_: object) -> None:
    serve.shutdown()
    ray.shutdown()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
serve.run(Model.bind(), route_prefix="/predict")
while True:
    time.sleep(3600)
"""


def rayserve(model: Any, name: str, rows: list[list[float]], workdir: Path, port: int) -> PeerSpec:
    """A Ray Serve deployment (one replica, ``@serve.batch``) loading ``model``."""
    python = peer_python("rayserve", rayserve_requirements())
    folder = workdir / f"rayserve-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    (folder / "app.py").write_text(RAY_APP)
    return PeerSpec(
        key="rayserve",
        name="Ray Serve (@serve.batch 16, 2 ms)",
        command=[str(python), str(folder / "app.py"), str(port)],
        port=port,
        ready="/predict",
        env=_env(
            python,
            BENCH_MODEL_PATH=str(folder / "model.joblib"),
            RAY_USAGE_STATS_ENABLED="0",
        ),
        path="/predict",
        bodies=[orjson.dumps({"input": [row]}) for row in rows],
        batch=orjson.dumps({"input": rows}),
        parse=bento_predictions,
        version="ray[serve] 2.60.0",
    )
