"""Attacks on the request slots (findings 3 and 15) and every way out of a request: a slot is
taken only while a request is handled, and given back however the request ends."""

from __future__ import annotations

from typing import cast

import pytest
import trio

from kaleido.app import service_of
from kaleido.http.app import create_app, create_ops_app
from kaleido.http.middleware import RequestLimits
from kaleido.http.server import ServerLimits
from kaleido.settings import Settings

from ..conftest import with_settings
from ..service_helpers import serving
from ..waiting import wait_until
from .conftest import Bare, H2Client, bare_server, connect, get, json_app, read_all

DECLARED_BODY = (
    b"POST /anything HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
)


async def idle(bare: Bare) -> bool:
    return bare.limits.in_flight == 0


async def test_a_completed_request_gives_its_slot_back() -> None:
    """Path out: answered."""
    async with bare_server(json_app) as bare:
        assert (await get(bare.address, "/ok")).startswith(b"HTTP/1.1 200")
        await wait_until(lambda: idle(bare))


async def test_a_failed_request_gives_its_slot_back() -> None:
    """Path out: the handler raised."""
    async with bare_server(json_app) as bare:
        assert (await get(bare.address, "/fail")).startswith(b"HTTP/1.1 500")
        await wait_until(lambda: idle(bare))


async def test_a_request_whose_client_goes_is_cancelled_and_gives_its_slot_back() -> None:
    """Path out: the client closed its connection while its request was being handled."""
    async with bare_server(json_app) as bare:
        stream = await connect(bare.address)
        await stream.send_all(b"GET /sleep/3600 HTTP/1.1\r\nHost: k\r\n\r\n")
        await wait_until(lambda: _equals(bare.limits.in_flight, 1))
        await stream.aclose()
        await wait_until(lambda: idle(bare), timeout=5)


async def test_an_http2_request_whose_client_goes_gives_its_slot_back() -> None:
    """Path out: connection gone, on HTTP/2, with the handler answering after the client left
    (hypercorn's stream then waits for a send that never happens: the request is cancelled)."""
    async with bare_server(json_app, ServerLimits(http2=True)) as bare:
        client = await H2Client.open(bare.address)
        client.request("GET", "/sleep/0.3")
        await client.flush()
        await wait_until(lambda: _equals(bare.limits.in_flight, 1))
        await client.aclose()
        await wait_until(lambda: idle(bare), timeout=5)


async def test_a_request_cancelled_by_shutdown_gives_its_slot_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Path out: cancelled (the server stopped past its graceful timeout)."""
    monkeypatch.setattr("kaleido.http.server.GRACEFUL_TIMEOUT", 0.2)
    limits_seen: list[int] = []
    async with bare_server(json_app) as bare:
        stream = await connect(bare.address)
        await stream.send_all(b"GET /sleep/3600 HTTP/1.1\r\nHost: k\r\n\r\n")
        await wait_until(lambda: _equals(bare.limits.in_flight, 1))
        limits = bare.limits
    limits_seen.append(limits.in_flight)  # the server has stopped: its requests were cancelled
    await stream.aclose()
    assert limits_seen == [0]


async def test_a_body_that_never_comes_takes_no_slot_and_ends_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Path out: the body deadline. 4 clients declare a body and never send it, as many as
    there are slots: every other request, and the probes, are still served."""
    monkeypatch.setattr("kaleido.http.middleware.BODY_DEADLINE", 1.0)
    async with bare_server(json_app, max_in_flight=4) as bare:
        stalled = [await connect(bare.address) for _ in range(4)]
        for stream in stalled:
            await stream.send_all(DECLARED_BODY)
        assert bare.limits.in_flight == 0
        assert (await get(bare.address, "/ok")).startswith(b"HTTP/1.1 200")
        for stream in stalled:
            reply = await read_all(stream)
            assert reply.startswith(b"HTTP/1.1 408") and b"body not received within 1 s" in reply
            await stream.aclose()
        await wait_until(lambda: idle(bare))


async def test_http2_requests_abandoned_before_the_body_deadline_leak_no_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 15: HTTP/2 clients that close their connection just before the body deadline
    left their slots taken for good. Now the slots are back at once and the listener serves."""
    monkeypatch.setattr("kaleido.http.middleware.BODY_DEADLINE", 0.5)
    server = ServerLimits(http2=True, max_connections=4)  # a leaked connection would show
    async with bare_server(json_app, server, max_in_flight=4) as bare:
        for _ in range(3):  # rounds, as the attack did
            clients = [await H2Client.open(bare.address) for _ in range(3)]
            for client in clients:
                for _ in range(8):
                    client.request("POST", "/x", body_follows=True, **{"content-length": "9"})
                await client.flush()
            await trio.sleep(0.45)
            for client in clients:
                await client.aclose()
            await wait_until(lambda: idle(bare), timeout=5)
            assert (await get(bare.address, "/ok")).startswith(b"HTTP/1.1 200")


async def test_http2_streams_that_hold_back_their_body_do_not_starve_others() -> None:
    """Finding 3 (with HTTP/2 turned on): connections of streams that declare a body and never
    send it hold no request slot, so other clients and the probes are served at once."""
    server = ServerLimits(http2=True)
    async with bare_server(json_app, server, max_in_flight=4) as bare:
        clients = [await H2Client.open(bare.address) for _ in range(4)]
        for client in clients:
            for _ in range(10):
                client.request("POST", "/x", body_follows=True, **{"content-length": "9"})
            await client.flush()
        assert bare.limits.in_flight == 0
        with trio.fail_after(2):
            assert (await get(bare.address, "/ok")).startswith(b"HTTP/1.1 200")
            assert (await get(bare.address, "/healthz")).startswith(b"HTTP/1.1 200")
        for client in clients:
            await client.aclose()


async def test_probes_are_answered_while_every_slot_is_taken() -> None:
    """Health and readiness never count against the request limits."""
    async with bare_server(json_app, max_in_flight=2) as bare:
        busy = [await connect(bare.address) for _ in range(2)]
        for stream in busy:
            await stream.send_all(b"GET /sleep/3600 HTTP/1.1\r\nHost: k\r\n\r\n")
        await wait_until(lambda: _equals(bare.limits.in_flight, 2))
        refused = await get(bare.address, "/ok")
        assert refused.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in refused
        assert (await get(bare.address, "/healthz")).startswith(b"HTTP/1.1 200")
        assert (await get(bare.address, "/readyz")).startswith(b"HTTP/1.1 200")
        for stream in busy:
            await stream.aclose()
        await wait_until(lambda: idle(bare), timeout=5)


async def test_both_listeners_take_their_cap_from_the_settings(settings: Settings) -> None:
    async with serving(with_settings(settings, max_in_flight=3)) as running:
        for app in (create_app(service_of(running)), create_ops_app(service_of(running))):
            given = {cast(type, m.cls): m.kwargs for m in app.user_middleware}
            assert given[RequestLimits] == {"max_in_flight": 3}


async def _equals(value: int, expected: int) -> bool:
    return value == expected
