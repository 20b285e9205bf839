"""The uvicorn server behind ``prodml serve``, whose shutdown answers every request
already sent.

uvicorn's own shutdown closes the listening sockets at once: connections the kernel had
completed and queued in the listen backlog, but the server had not accepted yet, are
reset, and accepted connections whose request is still unread are closed without an
answer. :class:`DrainingServer` first tells every response from then on to close its
connection (``Connection: close``), then lets the event loop take what is already
waiting — it accepts until the listening sockets have nothing queued and no idle
connection has unread bytes, for at most :func:`accept_window` seconds — and only then
lets uvicorn close the listeners and wait (``[serving] shutdown_timeout_s``) for the
requests in flight. Imported only by ``prodml serve``, so the CLI loads uvicorn lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import select
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess, multiprocess

__all__ = ["DrainingServer", "accept_window", "run"]

_ACCEPT_WINDOW_S = 5.0
_POLL_S = 0.005


def accept_window(timeout_s: float | None) -> float:
    """How long a stopping server keeps taking connections already queued: at most 5 s,
    and at most half the drain timeout ``timeout_s`` (None: no timeout).

    >>> accept_window(30), accept_window(4), accept_window(None)
    (5.0, 2.0, 5.0)
    """
    return _ACCEPT_WINDOW_S if timeout_s is None else min(_ACCEPT_WINDOW_S, timeout_s / 2)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that, on shutdown, accepts and answers the connections queued in
    the listen backlog before it closes the listening sockets."""

    async def shutdown(self, sockets: Any = None) -> None:
        state = self.server_state
        state.default_headers = [*state.default_headers, (b"connection", b"close")]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + accept_window(self.config.timeout_graceful_shutdown)
        while self._waiting() and loop.time() < deadline:
            await asyncio.sleep(_POLL_S)  # the loop accepts and reads meanwhile
        await super().shutdown(sockets)

    def _waiting(self) -> bool:
        """Whether a listening socket has a connection queued, or an accepted connection
        with no request under way has bytes the server has not read yet."""
        fds = [sock.fileno() for server in getattr(self, "servers", ()) for sock in server.sockets]
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if (cycle is not None and not cycle.response_complete) or transport is None:
                continue  # a request under way: uvicorn waits for it
            sock = None if transport.is_closing() else transport.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                fds.append(sock.fileno())
        if not fds:
            return False
        if not hasattr(select, "poll"):  # Windows: select() takes sockets, any number
            return bool(select.select(fds, [], [], 0)[0])
        poller = select.poll()  # no FD_SETSIZE limit
        for fd in fds:
            poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))


class _DrainingProcess(multiprocess.Process):
    """A worker of ``--workers N`` that runs a :class:`DrainingServer`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


def run(app: Any, *, workers: int = 1, **options: Any) -> None:
    """Serve ``app`` (an ASGI app, or with ``workers`` > 1 an import string) as
    :func:`uvicorn.run` does, each process with a :class:`DrainingServer`."""
    config = uvicorn.Config(app, workers=workers, **options)
    if workers <= 1:
        server = DrainingServer(config)
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl+C ends quietly
            server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    sock = config.bind_socket()
    if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn
        Multiprocess(config, target=DrainingServer(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
        return
    plain = multiprocess.Process
    multiprocess.Process = _DrainingProcess  # type: ignore[misc]
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        multiprocess.Process = plain  # type: ignore[misc]
