"""The red-team suite's HTTP side: a deployment as a careful operator runs it (JWT secret,
service token, admin token) and the tools of an attacker: raw sockets, hand-made HTTP/2 frames,
tokens signed every wrong way.

Two kinds of target: the whole service in-process (`secured`: real Redis and PostgreSQL, both
listeners on free ports) where the attack goes through Kaleido's routes, and a bare listener
(`bare_server`: kaleido.http.server and the request limits around a tiny application) where
the attack is on the server itself, so that it needs no backend and runs in milliseconds.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h2.config
import h2.connection
import h2.events
import httpx
import jwt
import pytest
import trio

from kaleido.app import Running
from kaleido.http.middleware import RequestLimits
from kaleido.http.server import ServerLimits, serve_http
from kaleido.settings import Settings

from ..service_helpers import ADMIN_TOKEN, serving
from .report import Outcomes

OUTCOMES = Outcomes()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each attack's outcome, for the suite's report (tests/redteam/report.py)."""
    report = yield
    OUTCOMES.record(item, report)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    OUTCOMES.write()


KEY = b"k" * 32
JWT_SECRET = base64.b64encode(KEY).decode()
SERVICE_TOKEN = "service-token-0123456789-0123456789"
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def user_token(user_id: int, role: str = "ROLE_USER", ttl: int = 3600, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": f"user{user_id}", "userId": user_id, "role": role, "iat": now,
            "exp": now + ttl, **claims}  # fmt: skip
    return jwt.encode(body, KEY, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def secured_settings(settings: Settings, **changes: Any) -> Settings:
    return attrs.evolve(settings, jwt_secret=JWT_SECRET, service_token=SERVICE_TOKEN,
                        admin_token=ADMIN_TOKEN, **changes)  # fmt: skip


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[Running]:
    """The service with every credential configured, on emptied backends."""
    async with serving(secured_settings(settings)) as running:
        yield running


def address(url: str) -> tuple[str, int]:
    host, port = url.split("://")[-1].rsplit(":", 1)
    return host.strip("[]"), int(port)


def public(running: Running) -> httpx.AsyncClient:
    host, port = address(running.http_addresses[0])
    return httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10)


def ops(running: Running) -> httpx.AsyncClient:
    host, port = address(running.ops_addresses[0])
    return httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10)


# ------------------------------------------------------------------------- a bare listener


@attrs.define
class Bare:
    """A listener of kaleido.http.server around `app`, with the request limits."""

    url: str
    limits: RequestLimits

    @property
    def address(self) -> tuple[str, int]:
        return address(self.url)


@asynccontextmanager
async def bare_server(
    app: Callable[[Any, Any, Any], Awaitable[None]],
    server: ServerLimits | None = None,
    max_in_flight: int = 4,
) -> AsyncIterator[Bare]:
    limits = RequestLimits(app, max_in_flight)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(
            serve_http, limits, "127.0.0.1:0", stop, server or ServerLimits()
        )
        yield Bare(urls[0], limits)
        stop.set()


async def json_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request `{"ok": true}`; `/sleep/<seconds>` first sleeps, `/fail` raises,
    `/healthz` answers at once."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.startswith("/sleep/"):
        await trio.sleep(float(path.removeprefix("/sleep/")))
    if path == "/fail":
        raise RuntimeError("a handler that fails")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


async def connect(where: tuple[str, int], source: str | None = None) -> trio.SocketStream:
    """A TCP connection, from the loopback address `source` when given (127.0.0.2: another
    client on this machine)."""
    if source is None:
        return await trio.open_tcp_stream(*where)
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(where)
    return trio.SocketStream(sock)


async def read_all(stream: trio.SocketStream, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (TooSlowError after `timeout`)."""
    reply = b""
    with trio.fail_after(timeout):
        try:
            while chunk := await stream.receive_some(65536):
                reply += chunk
        except trio.BrokenResourceError:
            pass  # a reset ends it too
    return reply


async def closed_by_server(stream: trio.SocketStream, timeout: float) -> bool:
    """The server closes the connection within `timeout` (whatever it sent first)."""
    try:
        await read_all(stream, timeout)
    except trio.TooSlowError:
        return False
    return True


async def get(where: tuple[str, int], path: str, source: str | None = None) -> bytes:
    stream = await connect(where, source)
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n".encode()
        )
        return await read_all(stream)


# ------------------------------------------------------------------------- HTTP/2 by hand


class H2Client:
    """An HTTP/2 client over one TCP connection (prior knowledge), frame by frame."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.events: list[h2.events.Event] = []

    @classmethod
    async def open(cls, where: tuple[str, int]) -> H2Client:
        client = cls(await connect(where))
        client.h2.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send_all(data)

    def request(self, method: str, path: str, body_follows: bool = False, **headers: str) -> int:
        stream_id = self.h2.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "http"),
                  (":authority", "k"), *headers.items()]  # fmt: skip
        self.h2.send_headers(stream_id, fields, end_stream=not body_follows)
        return stream_id

    async def receive(self, timeout: float = 5.0) -> bool:
        """Read one chunk into `events`; False when the server closed the connection."""
        with trio.fail_after(timeout):
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return False
        if not data:
            return False
        try:
            self.events += self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            return False
        await self.flush()
        return True

    async def response_status(self, stream_id: int, timeout: float = 5.0) -> int | None:
        """The status of the stream's response (None if the connection ends first)."""
        with trio.fail_after(timeout):
            while True:
                for event in self.events:
                    if isinstance(event, h2.events.ResponseReceived) and (
                        event.stream_id == stream_id
                    ):
                        return int(dict(event.headers)[b":status"])
                if not await self.receive(timeout):
                    return None

    async def aclose(self) -> None:
        await self.stream.aclose()
