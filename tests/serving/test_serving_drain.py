"""SIGTERM under overload: ``prodml serve`` stops accepting, then answers every request
already sent — those it was serving, and those whose connections the kernel had
completed and queued in the listen backlog — and logs every prediction it answered.

Hundreds of raw sockets connect and send a request each; SIGTERM follows at once, while
many connections are still waiting in the backlog. Every one must get a complete HTTP
response (no reset, no early end of stream)."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import orjson
import pytest

from prodml.storage import read_log
from servingkit import FEATURES, ServerProcess, row, serving_project

pytestmark = pytest.mark.slow

CLIENTS = 400
DEADLINE_S = 120.0  # the longest any wait may take, however busy the machine
BODY = orjson.dumps(
    {
        "inputs": [
            {"name": name, "shape": [1], "datatype": "FP64", "data": [row(0)[name]]}
            for name in FEATURES
        ]
    }
)


def request(port: int, keep_alive: bool) -> bytes:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    return (
        b"POST /v2/models/lr/infer HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n".encode()
        + connection
        + b"\r\n"
        + BODY
    )


class Answer:
    """One response read off a raw socket: status, headers, and whether it was whole."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.problem: str | None = None
        self.closed_after = False
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                data += self._recv(sock, deadline)
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
            length = int(self.headers["content-length"])
            while len(body) < length:
                body += self._recv(sock, deadline)
            # the server ends the connection once shutting down: a clean close, no reset
            while self._recv(sock, deadline, eof_ok=True):
                pass
            self.closed_after = True
        except (OSError, EOFError, ValueError, KeyError) as exc:
            self.problem = f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _recv(sock: socket.socket, deadline: float, *, eof_ok: bool = False) -> bytes:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk and not eof_ok:
            raise EOFError("the connection ended before a complete response")
        return chunk


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_every_request_already_sent(tmp_path: Path, workers: int) -> None:
    config = "[serving]\nlog_flush_interval_s = 0.2\nlog_features = false\n"
    project, _ = serving_project(tmp_path / "project", config=config)
    project.close()
    server = ServerProcess(tmp_path / "project", workers=workers)
    sockets: list[socket.socket] = []
    try:
        server.wait_ready(timeout=DEADLINE_S)
        for i in range(CLIENTS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
            sock.sendall(request(server.port, keep_alive=i % 2 == 0))
            sockets.append(sock)
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DEADLINE_S
        answers = [Answer(sock, deadline) for sock in sockets]
        code = server.process.wait(timeout=DEADLINE_S)
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    output = b"".join(server.output).decode(errors="replace")
    problems = [a.problem for a in answers if a.problem is not None]
    assert not problems, f"{len(problems)} of {CLIENTS} unanswered: {problems[:3]}\n{output}"
    assert {a.status for a in answers} <= {200, 503}, output
    assert all(a.closed_after for a in answers)
    assert code == 0, output
    answered = {a.headers["x-request-id"] for a in answers if a.status == 200}
    assert answered
    table = read_log(project.state_dir / "logs" / "predictions", columns=["request_id"])
    assert answered <= set(table.column("request_id").to_pylist())
    # keep-alive requests answered while the server was shutting down were told so
    closing = [a for i, a in enumerate(answers) if i % 2 == 0 and a.headers.get("connection")]
    assert all(a.headers["connection"].lower() == "close" for a in closing)
