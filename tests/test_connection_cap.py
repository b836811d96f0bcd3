"""The cap on open connections per listener: past it, a new connection gets a 503 at once and
is closed; a slot freed is usable again; each listener has its own slots."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest
import trio

from kaleido.app import Running, serve
from kaleido.settings import Settings

from .waiting import wait_until

CAP = 3


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    capped = attrs.evolve(settings, max_connections=CAP)
    async with trio.open_nursery() as nursery:
        service: Running = await nursery.start(
            lambda task_status: serve(capped, task_status=task_status)
        )
        yield service
        service.stop()


async def connect(address: str) -> trio.SocketStream:
    host, port = address.split("://")[-1].rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def get_health(address: str) -> bytes:
    """The whole reply to `GET /healthz` on a new connection (the server closes it)."""
    stream = await connect(address)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
        reply = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                reply += chunk
    return reply


async def test_a_connection_past_the_cap_gets_a_503_and_a_freed_slot_serves_again(
    running: Running,
) -> None:
    public = running.http_addresses[0]
    assert (await get_health(public)).startswith(b"HTTP/1.1 200")
    idle = [await connect(public) for _ in range(CAP)]  # they hold every slot
    try:

        async def refused() -> bool:
            return (await get_health(public)).startswith(b"HTTP/1.1 503")

        await wait_until(refused)  # the server takes the idle ones' slots as it accepts them
        reply = await get_health(public)
        assert b"too many open connections" in reply and b"connection: close" in reply
        ops = await get_health(running.ops_addresses[0])  # the ops listener has its own slots
        assert ops.startswith(b"HTTP/1.1 200")
        await idle.pop().aclose()

        async def served() -> bool:
            return (await get_health(public)).startswith(b"HTTP/1.1 200")

        await wait_until(served)
    finally:
        for stream in idle:
            await stream.aclose()


async def test_a_request_head_not_complete_within_the_header_timeout_is_closed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kaleido.http.connection.HEADER_TIMEOUT", 0.5)
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        stream = await connect(running.http_addresses[0])
        async with stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: k\r\nX-Slow")  # never ends
            with trio.fail_after(10):
                reply = b""
                while chunk := await stream.receive_some(4096):
                    reply += chunk
        assert not reply.startswith(b"HTTP/1.1 200")  # closed (hypercorn answers nothing)
        running.stop()
