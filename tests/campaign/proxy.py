"""A TCP fault proxy on trio, between Kaleido and one backend (a redis-server, a cluster node,
PostgreSQL): every byte passes through it, and a fault changes what happens to them.

- latency and jitter: each chunk is held `delay + uniform(0, jitter)` seconds, in order;
- black hole: connections are accepted and nothing is forwarded either way; when the hole
  closes, every connection that lived through it is reset (what it sent is gone);
- reset mid-reply: a reply chunk is cut after a random prefix and both sides are reset;
- drop the reply: the request reached the backend (it ran), its reply is dropped and both
  sides are reset: the ambiguous call;
- half-open: the backend's side of the open connections is closed while the client's stays
  open and unanswered, until the client gives up on it.

The proxy never parses the protocol: a "reply" is whatever the backend sends, chunk by chunk,
so a cut may fall inside one reply or between pipelined ones.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import traceback
from collections.abc import Awaitable, Callable

import attrs
import trio

CHUNK = 65536


@attrs.define
class Faults:
    """What the proxy does to traffic now (all off: a transparent proxy)."""

    delay: float = 0.0
    jitter: float = 0.0
    black_hole: bool = False
    reset_reply: float = 0.0  # probability per reply chunk: forward a prefix, then reset
    drop_reply: float = 0.0  # probability per reply chunk: forward nothing, then reset
    # Drop the next reply to a request containing these bytes (once), then reset: one chosen
    # ambiguous call, e.g. b"XREADGROUP".
    drop_reply_to: bytes = b""
    # With drop_reply_to: only on a connection that sent these bytes since its last drop (a
    # COMMIT that follows a chosen statement: b"view_sync_batches").
    drop_armed_by: bytes = b""
    # With drop_reply_to: awaited after the reply is dropped and before the connection is
    # reset, i.e. after the call ran and before its caller can retry it (writes that land
    # in between, deterministically).
    before_reset: Callable[[], Awaitable[None]] | None = None


def _reset(stream: trio.SocketStream) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@attrs.define(eq=False)
class _Connection:
    client: trio.SocketStream
    upstream: trio.SocketStream | None = None
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    half_open: bool = False
    # Set while a black hole holds this connection: it is reset when the hole closes.
    swallowed: bool = False
    last_request: bytes = b""
    armed: bool = False  # sent Faults.drop_armed_by

    def reset(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)
        self.scope.cancel()


@attrs.define(eq=False)
class FaultProxy:
    """Listens on 127.0.0.1:`port` (a free one by default) and forwards to `upstream`."""

    upstream_port: int
    seed: int = 0
    faults: Faults = attrs.Factory(Faults)
    port: int = 0
    connections: set[_Connection] = attrs.Factory(set)
    accepted: int = 0
    dropped_replies: int = 0  # by drop_reply_to
    _rng: random.Random = attrs.field(init=False)
    _hole_closed: trio.Event = attrs.Factory(trio.Event)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    # -- faults, switched on and off by the nemesis

    def open_hole(self) -> None:
        self.faults.black_hole = True
        self._hole_closed = trio.Event()

    def close_hole(self) -> None:
        """End a black hole: connections that lived through it are reset."""
        self.faults.black_hole = False
        self._hole_closed.set()
        for conn in list(self.connections):
            if conn.swallowed:
                conn.reset()

    def half_open(self, share: float = 1.0) -> int:
        """Close the backend's side of `share` of the open connections; the clients' sides
        stay open, unanswered. Returns how many."""
        chosen = [c for c in self.connections if not c.half_open and self._rng.random() < share]
        for conn in chosen:
            conn.half_open = True
            if conn.upstream is not None:
                _reset(conn.upstream)
                upstream, conn.upstream = conn.upstream, None
                upstream.socket.close()
        return len(chosen)

    def reset_all(self) -> int:
        conns = list(self.connections)
        for conn in conns:
            conn.reset()
        return len(conns)

    # -- forwarding

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            await self._connection(client)
        except Exception:  # a bug of the proxy's: it drops that connection, not the campaign
            traceback.print_exc()

    async def _connection(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        conn = _Connection(client)
        self.connections.add(conn)
        try:
            with conn.scope:
                if self.faults.black_hole:
                    conn.swallowed = True
                    await self._swallow(client)
                    return
                try:
                    conn.upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                except OSError:
                    _reset(client)
                    return
                upstream = conn.upstream
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, conn, client, True, nursery.cancel_scope)
                    nursery.start_soon(self._pipe, conn, upstream, False, nursery.cancel_scope)
        finally:
            self.connections.discard(conn)
            with trio.CancelScope(shield=True):
                await client.aclose()
                if conn.upstream is not None:
                    await conn.upstream.aclose()

    async def _swallow(self, stream: trio.SocketStream) -> None:
        """Read and discard until the peer closes (or the connection is reset)."""
        try:
            while await stream.receive_some(CHUNK):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _pipe(
        self,
        conn: _Connection,
        source: trio.SocketStream,
        request: bool,
        scope: trio.CancelScope,
    ) -> None:
        """Forward what `source` sends (the upstream is passed in: `half_open` may already
        have taken it off the connection)."""
        try:
            while data := await source.receive_some(CHUNK):
                if not conn.half_open:  # else the client's side stays open and unanswered
                    await self._forward(conn, request, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        if conn.half_open and not request:
            return  # the backend's side was closed on purpose; the client's stays open
        scope.cancel()

    async def _forward(self, conn: _Connection, request: bool, data: bytes) -> None:
        faults = self.faults
        if faults.black_hole:
            conn.swallowed = True
            await self._hole_closed.wait()
            return  # the connection is reset by close_hole
        if faults.delay or faults.jitter:
            await trio.sleep(faults.delay + self._rng.uniform(0, faults.jitter))
        sink = conn.upstream if request else conn.client
        if sink is None:
            return
        if request:
            conn.last_request = data
            if faults.drop_armed_by and faults.drop_armed_by in data:
                conn.armed = True
        elif (
            faults.drop_reply_to
            and faults.drop_reply_to in conn.last_request
            and (conn.armed or not faults.drop_armed_by)
        ):
            faults.drop_reply_to = b""
            conn.armed = False
            self.dropped_replies += 1
            if faults.before_reset is not None:
                await faults.before_reset()
            conn.reset()
            await trio.sleep_forever()
        if not request:
            roll = self._rng.random()
            if roll < faults.drop_reply:
                conn.reset()
                await trio.sleep_forever()
            if roll < faults.drop_reply + faults.reset_reply and len(data) > 1:
                await sink.send_all(data[: self._rng.randrange(1, len(data))])
                conn.reset()
                await trio.sleep_forever()
        await sink.send_all(data)
