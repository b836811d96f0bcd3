"""Kaleido's HTTP server: listening sockets, the connection caps, and a `Connection`
(kaleido.http.connection) per accepted client.

Each listener keeps at most `max_connections` connections open, and at most
`max_connections_per_client` from one client address (a trusted proxy's connections count only
against the first cap: they carry many clients). Past either cap a new connection is answered
`503` with `Connection: close` at once and closed, as uvicorn's `--limit-concurrency` does;
connections already open are untouched. So idle or trickling clients cannot take every file
descriptor, and one client cannot take every slot.

This replaces `hypercorn.trio.serve` for Kaleido's own listeners only: nothing of hypercorn is
patched, so a program embedding Kaleido keeps hypercorn as it was.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from functools import partial

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio.worker_context import WorkerContext

from kaleido.http.connection import AsgiApp, Connection
from kaleido.http.proxies import TrustedProxies
from kaleido.logs import get_logger
from kaleido.setting_values import join_host_port

log = get_logger("kaleido.http")

# Seconds open requests may take to finish once the server stops.
GRACEFUL_TIMEOUT = 5.0
# Streams one HTTP/2 connection may have open at once (when HTTP/2 is on).
H2_MAX_STREAMS = 10
# A refused client that does not read its 503 or close must not hold a task for long.
REFUSAL_TIMEOUT = 1.0
_DRAIN_CHUNK = 4096


def _refusal(message: str) -> bytes:
    body = b'{"error": "%s"}' % message.encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )


TOO_MANY = _refusal("too many open connections; retry shortly")
TOO_MANY_FROM_CLIENT = _refusal("too many open connections from your address; retry shortly")


@attrs.frozen
class ServerLimits:
    """What one listener of one process allows."""

    max_connections: int = 1000
    max_connections_per_client: int = 64
    http2: bool = False  # cleartext HTTP/2 (prior knowledge, h2c)
    trusted_proxies: TrustedProxies = attrs.Factory(TrustedProxies)


@attrs.define
class _Listener:
    """The connections of one listener, counted in total and per client address."""

    app: AsgiApp
    config: Config
    context: WorkerContext
    limits: ServerLimits
    open: int = 0
    per_client: Counter[str] = attrs.Factory(Counter)
    live: set[Connection] = attrs.Factory(set)

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            peer = str(stream.socket.getpeername()[0])
        except OSError:
            await trio.aclose_forcefully(stream)
            return
        counted = not self.limits.trusted_proxies.trusts(peer)
        if self.open >= self.limits.max_connections:
            await _refuse(stream, TOO_MANY)
            return
        if counted and self.per_client[peer] >= self.limits.max_connections_per_client:
            await _refuse(stream, TOO_MANY_FROM_CLIENT)
            return
        self.open += 1
        if counted:
            self.per_client[peer] += 1
        connection = Connection(self.app, self.config, self.context, stream,
                                http2=self.limits.http2)  # fmt: skip
        self.live.add(connection)
        try:
            await connection.run()
        except Exception as exc:  # a bug on one connection must not stop the listener
            log.error("http.connection_failed", client=peer, exc_info=exc)
        finally:
            self.live.discard(connection)
            self.open -= 1
            if counted:
                self.per_client[peer] -= 1
                if self.per_client[peer] <= 0:
                    del self.per_client[peer]


async def _refuse(stream: trio.SocketStream, reply: bytes) -> None:
    """Answer 503, then read until the client closes (briefly): closing with its request
    unread would reset the connection, and the client could lose the answer."""
    with trio.move_on_after(REFUSAL_TIMEOUT), contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(reply)
        await stream.send_eof()
        while len(await stream.receive_some(_DRAIN_CHUNK)) > 0:
            pass
    await trio.aclose_forcefully(stream)


def _config(bind: str) -> Config:
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = None
    config.h2_max_concurrent_streams = H2_MAX_STREAMS
    return config


async def serve_http(
    app: AsgiApp,
    bind: str,
    shutdown: trio.Event,
    limits: ServerLimits = ServerLimits(),
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `bind` (HOST:PORT, or `fd://N`: a listening socket inherited from the
    worker supervisor) until `shutdown` is set; then stop accepting, close idle connections,
    and give open requests GRACEFUL_TIMEOUT to finish. Reports the bound addresses
    (`http://HOST:PORT`) through `task_status`."""
    config = _config(bind)
    sockets = config.create_sockets()
    listeners = []
    binds = []
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        host, port = sock.getsockname()[:2]
        binds.append(f"http://{join_host_port(host, port)}")
    listener = _Listener(app, config, WorkerContext(None), limits)
    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:
            accepting.start_soon(
                partial(trio.serve_listeners, listener.handle, listeners,
                        handler_nursery=connections)
            )  # fmt: skip
            task_status.started(binds)
            await shutdown.wait()
            accepting.cancel_scope.cancel()
        for resource in listeners:
            await resource.aclose()
        await listener.context.terminated.set()
        for connection in list(listener.live):
            connection.terminate()
        connections.cancel_scope.deadline = trio.current_time() + GRACEFUL_TIMEOUT
