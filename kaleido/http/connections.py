"""A cap on the open connections of each HTTP listener, and a read timeout that disconnects.

hypercorn has no such limit: every accepted connection gets a task and buffers until its read
timeout, so enough idle or trickling clients exhaust file descriptors and memory. Past the cap,
a new connection is answered `503` with `Connection: close` at once and closed, as uvicorn's
`--limit-concurrency` does; connections already open are untouched.

hypercorn's trio worker builds one `TCPServer` per accepted connection in tasks descended from
`serve`'s, so `serving_with_cap` puts the listener's slots in a context variable that those tasks
inherit, and `install` swaps in a `TCPServer` that takes a slot before serving and frees it
when the client has gone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar

import hypercorn.trio.run
import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

_slots: ContextVar[trio.Semaphore | None] = ContextVar("kaleido_connection_slots", default=None)

_BODY = b'{"error": "too many open connections; retry shortly"}'
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)
# A refused client that does not read its 503 or close must not hold a task for long.
REFUSAL_TIMEOUT = 1.0
_DRAIN_CHUNK = 4096


class CappedTCPServer(TCPServer):
    """hypercorn's per-connection server, serving only when its listener has a free slot."""

    _slot: trio.Semaphore | None = None

    async def run(self) -> None:
        slots = _slots.get()
        if slots is None:
            await super().run()
            return
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            await _refuse(self.stream)
            return
        self._slot = slots
        try:
            await super().run()
        finally:
            self._free_slot()

    async def _read_data(self) -> None:
        """hypercorn's read loop, but a client silent for `read_timeout` is disconnected at
        once (hypercorn kept its socket open until the keep-alive timer ended), and the slot
        is free as soon as the client is gone."""
        try:
            while True:
                try:
                    with trio.fail_after(self.config.read_timeout or math.inf):
                        data = await self.stream.receive_some(MAX_RECV)
                except trio.TooSlowError:
                    await self.protocol.handle(Closed())
                    await trio.aclose_forcefully(self.stream)
                    return
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                await self.protocol.handle(RawData(bytes(data)))
                if data == b"":
                    break
            await self.protocol.handle(Closed())
        finally:
            self._free_slot()

    def _free_slot(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None


async def _refuse(stream: trio.abc.Stream) -> None:
    """Answer 503, then read until the client closes (briefly): closing with its request
    unread would reset the connection, and the client could lose the answer."""
    with trio.move_on_after(REFUSAL_TIMEOUT), contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(REFUSAL)
        if isinstance(stream, trio.SocketStream):
            await stream.send_eof()
        while len(await stream.receive_some(_DRAIN_CHUNK)) > 0:
            pass
    await trio.aclose_forcefully(stream)


def install() -> None:
    """Make hypercorn's trio worker build `CappedTCPServer`s (idempotent)."""
    hypercorn.trio.run.TCPServer = CappedTCPServer  # type: ignore[attr-defined]


@contextlib.contextmanager
def serving_with_cap(limit: int) -> Iterator[trio.Semaphore]:
    """Within the block, connections accepted by a hypercorn server started from this task
    share `limit` slots."""
    install()
    slots = trio.Semaphore(limit)
    token = _slots.set(slots)
    try:
        yield slots
    finally:
        _slots.reset(token)
