"""Attacks on the connections themselves (findings 3, 5 and 8): cleartext HTTP/2, one client
holding every connection, trickled request heads, PING-only HTTP/2 connections, and the read
timeout that used to cut off long requests."""

from __future__ import annotations

import h2.events
import h2.settings
import pytest
import trio

from kaleido.http.server import H2_MAX_STREAMS, ServerLimits

from ..waiting import wait_until
from .conftest import H2Client, bare_server, closed_by_server, connect, get, json_app, read_all

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


async def test_cleartext_http2_is_off_by_default() -> None:
    """Finding 3: both listeners served cleartext HTTP/2. By default neither the HTTP/2
    preface nor an `Upgrade: h2c` gets HTTP/2."""
    async with bare_server(json_app) as bare:
        stream = await connect(bare.address)
        async with stream:
            await stream.send_all(PREFACE)
            reply = await read_all(stream)
        assert reply.startswith(b"HTTP/1.1 505")
        stream = await connect(bare.address)
        async with stream:
            await stream.send_all(
                b"GET /ok HTTP/1.1\r\nHost: k\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
            )
            with trio.fail_after(5):
                reply = await stream.receive_some(65536)  # the connection stays open
        assert reply.startswith(b"HTTP/1.1 200") and b"101" not in reply.split(b"\r\n")[0]


async def test_http2_when_turned_on_caps_the_streams_of_a_connection() -> None:
    """With KALEIDO_HTTP2=on, a connection may open H2_MAX_STREAMS streams at once: the server
    says so in its SETTINGS, and a client opening more loses the connection."""
    async with bare_server(json_app, ServerLimits(http2=True)) as bare:
        client = await H2Client.open(bare.address)
        assert await client.receive()
        settings = [e for e in client.events if isinstance(e, h2.events.RemoteSettingsChanged)]
        limit = settings[0].changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
        assert limit.new_value == H2_MAX_STREAMS
        codes = h2.settings.SettingCodes
        client.h2.remote_settings[codes.MAX_CONCURRENT_STREAMS] = 1000  # ignore what it said
        client.h2.remote_settings.acknowledge()
        for _ in range(H2_MAX_STREAMS + 5):
            client.request("POST", "/x", body_follows=True)
        await client.flush()
        assert await closed_by_server(client.stream, timeout=5)


async def test_one_client_cannot_hold_every_connection() -> None:
    """Finding 5: no per-client limit. Now one address holds at most
    max_connections_per_client; another client (127.0.0.2) is still served."""
    server = ServerLimits(max_connections=10, max_connections_per_client=3)
    async with bare_server(json_app, server) as bare:
        held = [await connect(bare.address) for _ in range(3)]
        refused = await get(bare.address, "/ok")
        assert refused.startswith(b"HTTP/1.1 503") and b"from your address" in refused
        assert (await get(bare.address, "/ok", source="127.0.0.2")).startswith(b"HTTP/1.1 200")
        await held.pop().aclose()

        async def served() -> bool:
            return (await get(bare.address, "/ok")).startswith(b"HTTP/1.1 200")

        await wait_until(served, timeout=5)
        for stream in held:
            await stream.aclose()


async def test_a_request_head_trickled_a_byte_at_a_time_is_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 5: one header byte every 3 s kept a connection about 30 s (each byte reset the
    read timeout). Now the whole head must arrive within HEADER_TIMEOUT of its first byte."""
    monkeypatch.setattr("kaleido.http.connection.HEADER_TIMEOUT", 0.6)
    async with bare_server(json_app) as bare:
        stream = await connect(bare.address)
        async with stream:
            started = trio.current_time()
            cut_off = False
            with trio.move_on_after(5):
                try:
                    for byte in b"GET /ok HTTP/1.1\r\nHost: k\r\nX-Slow: " + b"a" * 100:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(0.1)
                except trio.BrokenResourceError:
                    cut_off = True  # the server closed it under our feet
            assert cut_off or await closed_by_server(stream, timeout=5)
        assert trio.current_time() - started < 2.0


async def test_an_http2_connection_that_only_pings_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 5: an HTTP/2 connection that only sends PINGs stayed open forever. Now PINGs do
    not make a connection busy: with no stream open it is closed after KEEP_ALIVE_TIMEOUT."""
    monkeypatch.setattr("kaleido.http.connection.KEEP_ALIVE_TIMEOUT", 0.6)
    async with bare_server(json_app, ServerLimits(http2=True)) as bare:
        client = await H2Client.open(bare.address)
        started = trio.current_time()
        closed = False
        with trio.move_on_after(5):
            try:
                while await client.receive():
                    client.h2.ping(b"12345678")
                    await client.flush()
                    await trio.sleep(0.1)
            except trio.BrokenResourceError:
                pass
            closed = True
        assert closed and trio.current_time() - started < 2.0


async def test_a_request_handled_longer_than_every_timeout_gets_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 8: the read timeout also ran while a complete request was handled, so a request
    taking longer than 10 s lost its response. Timeouts now run only while waiting for request
    bytes (here all shortened to 0.3 s, and the request takes 1.2 s)."""
    for name in ("HEADER_TIMEOUT", "KEEP_ALIVE_TIMEOUT"):
        monkeypatch.setattr(f"kaleido.http.connection.{name}", 0.3)
    monkeypatch.setattr("kaleido.http.middleware.BODY_DEADLINE", 0.3)
    async with bare_server(json_app, ServerLimits(http2=True)) as bare:
        assert (await get(bare.address, "/sleep/1.2")).startswith(b"HTTP/1.1 200")
        client = await H2Client.open(bare.address)
        stream_id = client.request("GET", "/sleep/1.2")
        await client.flush()
        assert await client.response_status(stream_id, timeout=5) == 200
        await client.aclose()
