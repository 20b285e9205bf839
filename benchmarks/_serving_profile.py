"""Where a prediction request's server time goes, without HTTP: the server's ASGI app
called in-process, beside a bare FastAPI app answering the same bodies.

    python benchmarks/_serving_profile.py [--requests 8000] [--rounds 4] [--pyinstrument]

Builds ``serving.py``'s LR model in a temporary project, deploys it (policy ``single``)
and starts the app prodml serves (``prodml.web.ui_app``, its lifespan run: micro-batcher,
prediction-log writer). Then, per round, 16 concurrent callers send ``/invocations``
one-row bodies back to back, and the CPU time of this process per request is printed —
the server's own work (routing, decoding, checks, batching, the model, logging,
metrics), without the socket and HTTP parsing that uvicorn adds. The floor is a bare
FastAPI app that reads the body and answers a constant, driven the same way.
``--pyinstrument`` profiles the third round.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvloop
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sklearn.linear_model import LogisticRegression

import serving
from prodml import Project
from prodml.web import ui_app

CALLERS = 16


def floor_app() -> FastAPI:
    app = FastAPI()

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        await request.body()
        return Response(b'{"predictions":[0]}', 200, media_type="application/json")

    return app


async def call(app: Any, body: bytes) -> int:
    """One POST /invocations through ``app``'s ASGI interface; the response status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/invocations", "raw_path": b"/invocations",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "headers": [
            (b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }  # fmt: skip
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def rounds(app: Any, bodies: list[bytes], requests: int, count: int, profile: bool) -> list[float]:  # fmt: skip
    """CPU µs per request of each round."""

    async def caller(k: int, n: int) -> None:
        for i in range(n):
            status = await call(app, bodies[(k * 7 + i) % len(bodies)])
            if status != 200:
                raise RuntimeError(f"status {status}")

    figures = []
    for index in range(count):
        profiler = None
        if profile and index == 2:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
        cpu = time.process_time()
        await asyncio.gather(*(caller(k, requests // CALLERS) for k in range(CALLERS)))
        figures.append((time.process_time() - cpu) / requests * 1e6)
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
    return figures


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="prodml-serving-profile-") as tmp:
        X, y, query = serving.make_data(23)
        project_dir = Path(tmp) / "project"
        with Project.init(project_dir, name="bench") as project:
            model = LogisticRegression(max_iter=1000).fit(X, y)
            ref = serving.register(project, "lr", model, X)
        serving.deploy(project_dir, ref)
        bodies = serving.one_row_bodies(query)
        app = ui_app(Project.open(project_dir), close_project=True, own_process=True)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(
            app(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put
            )
        )
        started = await outbox.get()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {started}")
        ours = await rounds(app, bodies, args.requests, args.rounds, args.pyinstrument)
        floor = await rounds(floor_app(), bodies, args.requests, args.rounds, False)
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
    for name, figures in (("prodml app", ours), ("bare FastAPI", floor)):
        shown = ", ".join(f"{f:.0f}" for f in figures)
        print(f"{name}: CPU µs per request by round: {shown} (min {min(figures):.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pyinstrument", action="store_true")
    args = parser.parse_args()
    uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
