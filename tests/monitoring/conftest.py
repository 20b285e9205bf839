"""Fixtures of the monitoring tests: a trained project, copies of it set up for
monitoring, and a local HTTP server recording the POSTs of alert sinks."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pytest

from featurekit import T0
from trainkit import make_training_project


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, pa.Table]:
    """A project trained on its first 10 days (once per test module): its root, the
    model version's ref and the training set."""
    root = tmp_path_factory.mktemp("monitor") / "p"
    project = make_training_project(root)
    result = project.training.train(T0, T0 + timedelta(days=10))
    assert result.version is not None
    table = project.features.get_training_set(result.training_set).table
    project.close()
    return root, result.version.ref, table


@pytest.fixture
def monitored_copy(trained: tuple[Path, str, pa.Table]) -> Callable[..., Path]:
    """``monitored_copy(dest, config="")``: a copy of the ``trained`` project at ``dest``
    with a ``[monitoring]`` section of daily windows, ``min_rows = 50`` and the lines of
    ``config``; returns ``dest``."""

    def copy(dest: Path, config: str = "") -> Path:
        shutil.copytree(trained[0], dest)
        text = (dest / "prodml.toml").read_text()
        (dest / "prodml.toml").write_text(
            text + '\n[monitoring]\nwindow = "1d"\nmin_rows = 50\n' + config
        )
        return dest

    return copy


class Post(NamedTuple):
    """One POST a :class:`Receiver` got: its path, headers and JSON body."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """A local HTTP server at ``url`` that records POSTs in arrival order; paths under
    ``/fail`` answer 500."""

    url: str
    posts: list[Post] = field(default_factory=list)

    def bodies(self, path: str) -> list[Any]:
        """The bodies POSTed to ``path``, in arrival order."""
        return [post.body for post in self.posts if post.path == path]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A :class:`Receiver` running for one test (HTTP proxies unset so that requests to
    it stay local)."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    posts: list[Post] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                posts.append(Post(self.path, dict(self.headers.items()), body))
            self.send_response(500 if self.path.startswith("/fail") else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", posts)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
