"""One accepted HTTP connection: hypercorn's HTTP/1.1 and HTTP/2 protocol classes behind
Kaleido's own read loop, which decides how long a client may take.

A connection waits for request bytes in three ways, each with its own deadline, and for nothing
else:
- idle (before the first request, between requests, an HTTP/2 connection with no stream open):
  KEEP_ALIVE_TIMEOUT, whatever the client sends meanwhile (HTTP/2 PINGs and SETTINGS do not
  keep it open);
- an HTTP/1.1 request head begun: complete within HEADER_TIMEOUT of its first byte;
- a request body: complete within BODY_DEADLINE (kaleido.http.middleware, per request).
While a complete request is being handled nothing runs out: a request that takes a minute gets
its answer. A client that reads nothing of an answer for SEND_TIMEOUT is disconnected.

Cleartext HTTP/2 (prior knowledge or `Upgrade: h2c`) is served only when `http2` is on; else an
`Upgrade: h2c` is ignored (the request is answered in HTTP/1.1) and the HTTP/2 preface gets a
505. A request framed two ways (Content-Length and Transfer-Encoding) gets a 400 and the
connection is closed (RFC 9112 6.3: it may be an attempt at request smuggling).

When the client goes (EOF, reset, a deadline), every request still running on the connection
is cancelled within DISCONNECT_GRACE: nobody can read its answer, and whatever it
holds (a request slot, a DLQ replay) is given back.

This module uses hypercorn's protocol layer (`hypercorn.protocol`, its events and the trio
worker context), not its server: tests/test_hypercorn_canary.py checks the parts it relies on,
and pyproject.toml bounds hypercorn's version.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState

from kaleido.logs import get_logger

log = get_logger("kaleido.http")

# An idle connection (no request under way) is closed after this long; load balancers keep
# their own idle timeout below it.
KEEP_ALIVE_TIMEOUT = 30.0
# From its first byte, an HTTP/1.1 request head must be complete within this.
HEADER_TIMEOUT = 10.0
# A client that takes in nothing of a response for this long is disconnected.
SEND_TIMEOUT = 10.0
# Once the client is gone, its requests still running may finish within this, then are
# cancelled.
DISCONNECT_GRACE = 1.0
MAX_RECV = 2**16

_NO_H2 = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
)
_TWO_FRAMINGS_BODY = b'{"error": "both Content-Length and Transfer-Encoding sent"}'
_TWO_FRAMINGS = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TWO_FRAMINGS_BODY), _TWO_FRAMINGS_BODY)
)

AsgiApp = Callable[[Any, Any, Any], Awaitable[None]]


class _Refused(Exception):
    """A request answered with `reply`, and then the connection is closed."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reply = reply


def _framed_twice(event: h11.Request) -> bool:
    names = {name.lower() for name, _ in event.headers}
    return b"content-length" in names and b"transfer-encoding" in names


class _H11(H11Protocol):
    """HTTP/1.1 that refuses a request framed two ways."""

    async def _check_protocol(self, event: h11.Request) -> None:
        if _framed_twice(event):
            raise _Refused(_TWO_FRAMINGS)
        await super()._check_protocol(event)


class _H11Only(_H11):
    """HTTP/1.1 that never switches to HTTP/2: `Upgrade: h2c` is ignored (allowed by RFC 9110:
    a server may answer an upgrade request in the protocol it was sent in)."""

    async def _check_protocol(self, event: h11.Request) -> None:
        if _framed_twice(event):
            raise _Refused(_TWO_FRAMINGS)
        if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            raise _Refused(_NO_H2)


class _Requests:
    """The task group hypercorn's protocol classes spawn request handlers into: a nursery of
    the connection, so that they end with it."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    async def spawn_app(
        self, app: AsgiApp, config: Config, scope: Any, send: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        to_app, from_client = trio.open_memory_channel[Any](config.max_app_queue_size)
        self._nursery.start_soon(_run_app, app, scope, from_client, send)

        async def put(message: Any) -> None:
            # The handler has ended: what the client still sends is not wanted.
            with contextlib.suppress(trio.BrokenResourceError):
                await to_app.send(message)

        return put

    def spawn(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._nursery.start_soon(func, *args)


async def _run_app(
    app: AsgiApp,
    scope: Any,
    messages: trio.MemoryReceiveChannel[Any],
    send: Callable[[Any], Awaitable[None]],
) -> None:
    answered = False

    async def watched_send(message: Any) -> None:
        nonlocal answered
        answered = answered or message.get("type") == "http.response.start"
        await send(message)

    try:
        with messages:
            await app(scope, messages.receive, watched_send)
    except Exception as exc:
        # The application's error handler answers and logs a bug, then re-raises it (Starlette's
        # ServerErrorMiddleware); logging it again here would report one bug twice.
        if not answered:
            log.error("http.unhandled", path=scope.get("path"), exc_info=exc)
    finally:
        await send(None)  # hypercorn: the application is done with this stream


class _Protocol:
    """HTTP/1.1, switching to HTTP/2 (prior knowledge or h2c) only when allowed."""

    def __init__(self, connection: Connection, requests: _Requests) -> None:
        self._connection = connection
        self._requests = requests
        protocol = _H11 if connection.http2 else _H11Only
        self.inner: Any = protocol(*self._arguments())

    def _arguments(self) -> tuple[Any, ...]:
        c = self._connection
        return (c.app, c.config, c.context, self._requests, ConnectionState({}), False,
                c.client, c.server, c.protocol_send)  # fmt: skip

    @property
    def is_http2(self) -> bool:
        return isinstance(self.inner, H2Protocol)

    async def initiate(self) -> None:
        await self.inner.initiate()

    async def handle(self, event: Event) -> None:
        try:
            await self.inner.handle(event)
        except H2ProtocolAssumedError as preface:
            self.inner = H2Protocol(*self._arguments())
            await self.inner.initiate()
            await self._connection.protocol_send(Updated(idle=True))  # no stream yet
            if preface.data:
                await self.inner.handle(RawData(data=preface.data))
        except H2CProtocolRequiredError as upgrade:
            self.inner = H2Protocol(*self._arguments())
            await self.inner.initiate(upgrade.headers, upgrade.settings)
            if upgrade.data:
                await self.inner.handle(RawData(data=upgrade.data))
        except _Refused as refused:
            await self._connection.protocol_send(RawData(data=refused.reply))
            await self._connection.protocol_send(Closed())


class Connection:
    """Serves one client connection until it closes; `run` never raises for a client's
    doing (a reset, a protocol error, a timeout just end it)."""

    def __init__(
        self, app: AsgiApp, config: Config, context: WorkerContext, stream: trio.SocketStream,
        *, http2: bool,
    ) -> None:  # fmt: skip
        self.app = app
        self.config = config
        self.context = context
        self.stream = stream
        self.http2 = http2
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self._send_lock = trio.Lock()
        self._closed = False  # nothing more is sent
        self._stream_closed = False
        self._busy = False
        self._terminating = False
        self._idle_since = trio.current_time()
        self._head_started: float | None = None
        self._waiting: trio.CancelScope | None = None
        self._protocol: _Protocol | None = None

    async def run(self) -> None:
        try:
            self.client = _address(self.stream.socket.getpeername())
            self.server = _address(self.stream.socket.getsockname())
            async with trio.open_nursery() as requests:
                self._protocol = _Protocol(self, _Requests(requests))
                await self._protocol.initiate()
                await self._read()
                await self._protocol.handle(Closed())  # open requests hear http.disconnect
                requests.cancel_scope.deadline = trio.current_time() + DISCONNECT_GRACE
        except OSError:
            pass  # the client was gone before we knew its address
        finally:
            await self._close()

    def terminate(self) -> None:
        """The server is stopping: close once no request is under way."""
        self._terminating = True
        self._refresh_deadline()

    # -- reading -------------------------------------------------------------------------

    def _deadline(self) -> float:
        if self._busy:
            return math.inf  # a complete request is being handled, or reads its own body
        if self._terminating:
            return -math.inf
        if self._head_started is not None:
            return self._head_started + HEADER_TIMEOUT
        return self._idle_since + KEEP_ALIVE_TIMEOUT

    def _refresh_deadline(self) -> None:
        if self._waiting is not None:
            self._waiting.deadline = self._deadline()

    async def _read(self) -> None:
        assert self._protocol is not None
        while not self._closed:
            with trio.CancelScope(deadline=self._deadline()) as waiting:
                self._waiting = waiting
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                finally:
                    self._waiting = None
            if waiting.cancelled_caught or not data:
                return  # a deadline passed, or the client closed its side
            if not self._busy and self._head_started is None and not self._protocol.is_http2:
                self._head_started = trio.current_time()
            await self._protocol.handle(RawData(data=bytes(data)))

    # -- what the protocol asks for ------------------------------------------------------

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            await self._send(event.data)
        elif isinstance(event, Closed):
            await self._close()
        elif isinstance(event, Updated):
            self._busy = not event.idle
            self._head_started = None
            if event.idle:
                self._idle_since = trio.current_time()
            self._refresh_deadline()

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            if self._closed:
                return
            # Shielded: a request cancelled mid-write must not leave half a frame behind; the
            # deadline bounds it instead.
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + SEND_TIMEOUT
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._closed = True
            if scope.cancelled_caught or self._closed:
                await self._close()

    async def _close(self) -> None:
        """Stop sending and close the socket (once); a read waiting on it ends."""
        self._closed = True
        if self._stream_closed:
            return
        self._stream_closed = True
        with trio.CancelScope(shield=True):
            gone = (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError)
            with contextlib.suppress(*gone):
                await self.stream.send_eof()
            await trio.aclose_forcefully(self.stream)


def _address(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None
