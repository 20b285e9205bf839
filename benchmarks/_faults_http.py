"""Plumbing of ``benchmarks/faults.py``: a ``prodml serve`` subprocess, its resident
memory, the request ids in its prediction log, and small HTTP/1.1 clients on raw
sockets (paced load, a burst of connections, a chunked upload, a /healthz poller)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

PYTHON = sys.executable
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def group_rss_bytes(pgid: int) -> int:
    """The summed VmRSS of the live processes of process group ``pgid`` (the server
    and any worker or child it started)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # after the name: state, ppid, pgrp
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


class Server:
    """``prodml serve`` on a free loopback port, in a process group of its own."""

    def __init__(self, project: Path, log: Path, **serving: Any) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRODML__")}
        env.update({f"PRODML__SERVING__{k.upper()}": str(v) for k, v in serving.items()})
        command = [
            PYTHON, "-m", "prodml.cli", "serve", "-p", str(project), "--host", HOST,
            "--port", str(self.port), "--workers", "1", "--log-level", "warning",
        ]  # fmt: skip
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.pid = self.process.pid

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prodml serve exited {self.process.returncode}:\n{self.tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/readyz", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"prodml serve not ready in {timeout} s:\n{self.tail()}")

    def rss(self) -> int:
        return group_rss_bytes(self.pid)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the group after 30 s (or at once if already gone)."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            self.wait(30)
        self.kill_group()
        self.wait(5)


@contextlib.contextmanager
def serving(project: Path, log: Path, **config: Any) -> Iterator[Server]:
    server = Server(project, log, **config)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class RssSampler:
    """Samples a server's RSS every ``interval_s`` on a thread; ``peak`` and ``samples``."""

    def __init__(self, server: Server, interval_s: float = 0.02) -> None:
        self.server = server
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.server.rss()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def logged_ids(state_dir: Path) -> tuple[set[str], int]:
    """The request ids in the prediction log (``logs/predictions/**.parquet``, the layout
    of ``prodml.storage._log_format``) and the number of files that could not be read."""
    ids: set[str] = set()
    unreadable = 0
    for path in sorted((state_dir / "logs" / "predictions").rglob("*.parquet")):
        try:
            column = pq.read_table(path, columns=["request_id"]).column("request_id")
        except Exception:  # any unreadable file is counted; none stops the count
            unreadable += 1
            continue
        ids.update(str(v) for v in column.to_pylist() if v is not None)
    return ids, unreadable


# ---------------------------------------------------------------- raw HTTP/1.1


def request_bytes(path: str, body: bytes, headers: dict[str, str], *, close: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and head of one response (its body read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.find(b"\r\n", at + 2)
        await reader.readexactly(int(lower[at + 17 : end]))
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, head


def closes(head: bytes) -> bool:
    return b"\r\nconnection: close" in head.lower()


BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


@dataclass
class Paced:
    """Requests sent at a steady rate over a few keep-alive connections."""

    answered: dict[str, float] = field(default_factory=dict)  # request id -> wall time of a 200
    statuses: dict[int, int] = field(default_factory=dict)
    broken: int = 0
    sent: int = 0


async def paced(
    port: int,
    make: Callable[[int], tuple[str, bytes]],
    rate: float,
    seconds: float,
    *,
    connections: int = 8,
    at_end: Callable[[], None] | None = None,
    linger_s: float = 0.0,
) -> Paced:
    """Request ``i`` (``make(i)`` gives its id and bytes) is due at ``i / rate`` s; due
    requests go to the first free connection. After ``seconds``, ``at_end()`` runs (a
    kill) while requests are still due, and the load goes on ``linger_s`` more."""
    out = Paced()
    queue: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()

    async def worker() -> None:
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while not stop.is_set():
            try:
                index = await asyncio.wait_for(queue.get(), 0.2)
            except TimeoutError:
                continue
            request_id, data = make(index)
            try:
                if stream is None:
                    stream = await asyncio.open_connection(HOST, port)
                reader, writer = stream
                writer.write(data)
                out.sent += 1
                status, head = await read_response(reader)
            except BROKEN:
                out.broken += 1
                if stream is not None:
                    stream[1].close()
                stream = None
                await asyncio.sleep(0.01)
                continue
            out.statuses[status] = out.statuses.get(status, 0) + 1
            if status == 200:
                out.answered[request_id] = time.time()
            if closes(head):
                stream[1].close()
                stream = None
        if stream is not None:
            stream[1].close()

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    began = time.perf_counter()
    index = 0
    ended = False
    while True:
        now = time.perf_counter() - began
        if not ended and now >= seconds:
            ended = True
            if at_end is not None:
                at_end()
        if now >= seconds + linger_s:
            break
        while index / rate <= now:
            queue.put_nowait(index)
            index += 1
        await asyncio.sleep(max(0.0, index / rate - now))
    stop.set()
    await asyncio.gather(*tasks)
    return out


@dataclass
class Burst:
    """What happened to the requests of an overload that ends in a stop."""

    sent: int = 0  # written to a connection (all before the stop)
    answered: int = 0  # any HTTP response
    unanswered: int = 0  # written, then EOF or reset without a response
    refused: int = 0  # connections of the last burst refused before the stop (not sent)
    ok_ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    #: unanswered requests by how they were sent and the error ("keep-alive EOF", ...)
    failures: dict[str, int] = field(default_factory=dict)

    def send(self, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes) -> None:
        stream[1].write(data)
        self.sent += 1

    async def answer(
        self, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], kind: str
    ) -> bytes | None:
        """The head of the answer to the request just sent; None if none came."""
        try:
            status, head = await asyncio.wait_for(read_response(stream[0]), 120)
        except (*BROKEN, TimeoutError) as exc:
            self.unanswered += 1
            error = "EOF" if isinstance(exc, asyncio.IncompleteReadError) else type(exc).__name__
            self.failures[f"{kind} {error}"] = self.failures.get(f"{kind} {error}", 0) + 1
            stream[1].close()
            return None
        self.answered += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return head


async def burst(
    port: int,
    make: Callable[[int], tuple[str, bytes]],
    workers: int,
    load_s: float,
    final: int,
    stop: Callable[[], None],
) -> Burst:
    """``workers`` clients send requests back to back for ``load_s`` (even-numbered ones
    on a keep-alive connection, odd ones on a new connection per request); then
    ``final`` more connections are opened at once with a request written on each (they
    wait in the accept queue), and ``stop()`` runs (a SIGTERM). No request is written
    after that; every one written before must be answered."""
    out = Burst()
    counter = iter(range(10**9))
    stopping = asyncio.Event()

    def request(close: bool) -> tuple[str, bytes]:
        request_id, data = make(next(counter))
        if close:
            data = data.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        return request_id, data

    async def client(number: int) -> None:
        keep = number % 2 == 0
        kind = "keep-alive" if keep else "new connection"
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while not stopping.is_set():
            if stream is None:
                try:
                    stream = await asyncio.open_connection(HOST, port)
                except OSError:
                    await asyncio.sleep(0.01)
                    continue
                if stopping.is_set():
                    break
            request_id, data = request(not keep)
            out.send(stream, data)
            head = await out.answer(stream, kind)
            if head is not None and head[9:12] == b"200":
                out.ok_ids.append(request_id)
            if head is None or not keep or closes(head):
                stream[1].close()
                stream = None
        if stream is not None:
            stream[1].close()

    async def last(
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], request_id: str
    ) -> None:
        head = await out.answer(stream, "queued at the stop")
        if head is not None and head[9:12] == b"200":
            out.ok_ids.append(request_id)
        stream[1].close()

    clients = [asyncio.create_task(client(i)) for i in range(workers)]
    await asyncio.sleep(load_s)
    opened = await asyncio.gather(
        *(asyncio.open_connection(HOST, port) for _ in range(final)), return_exceptions=True
    )
    queued = []
    for stream in opened:
        if isinstance(stream, BaseException):
            out.refused += 1
            continue
        request_id, data = request(True)
        out.send(stream, data)
        queued.append(asyncio.create_task(last(stream, request_id)))
    stopping.set()
    stop()
    await asyncio.gather(*clients, *queued)
    return out


def chunked_upload(port: int, path: str, total_bytes: int, chunk_bytes: int) -> dict[str, Any]:
    """Stream ``total_bytes`` to ``path`` in chunks (``Transfer-Encoding: chunked``, no
    Content-Length), stopping as soon as the server answers or closes; its answer."""
    sock = socket.create_connection((HOST, port), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = f"{chunk_bytes:x}\r\n".encode() + b" " * chunk_bytes + b"\r\n"
    sent = 0
    began = time.perf_counter()
    try:
        sock.sendall(head)
        while sent < total_bytes:
            if select.select([sock], [], [], 0)[0]:
                break  # an answer (or a close) before the end
            try:
                sock.sendall(chunk)
            except (TimeoutError, OSError):
                break
            sent += chunk_bytes
        else:
            with contextlib.suppress(OSError):
                sock.sendall(b"0\r\n\r\n")
        status: int | None = None
        with contextlib.suppress(OSError, ValueError):
            sock.settimeout(120)
            data = sock.recv(4096)
            if data.startswith(b"HTTP/1.1 "):
                status = int(data[9:12])
    finally:
        sock.close()
    return {"sent_bytes": sent, "status": status, "seconds": round(time.perf_counter() - began, 2)}


class HealthPoller:
    """GET /healthz back to back on one keep-alive connection, on a thread: the answer
    times, and the longest gap between two of them (the last one ends at the exit)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.times: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.ended = 0.0

    def _run(self) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
        self.times.append(time.perf_counter())
        while not self._stop.is_set():
            try:
                connection.request("GET", "/healthz")
                connection.getresponse().read()
            except (OSError, http.client.HTTPException):
                self.failures += 1
                connection.close()
                connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
                continue
            self.times.append(time.perf_counter())
        connection.close()

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ended = time.perf_counter()
        self._stop.set()
        self._thread.join(120)

    def longest_gap_ms(self, start: float = 0.0, end: float = math.inf) -> float:
        """The longest gap between answers that overlaps ``start``-``end``
        (``time.perf_counter`` seconds; default: the whole poll)."""
        marks = [*self.times, self.ended]
        gaps = (b - a for a, b in itertools.pairwise(marks) if b >= start and a <= end)
        return max(gaps, default=0.0) * 1e3


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request on a fresh connection: status and body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=300)
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
