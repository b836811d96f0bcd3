"""ASGI middleware: a correlation id for every request (`X-Correlation-ID`, or a new one), the
limits of a request (its body, a slot among those in flight, the pace of its answer), and the
client address and scheme behind a trusted proxy.

A caller's id is kept only if Kaleido may forward it to the ML service: the header's alphabet,
and text that the ML service's field decoding leaves text (`kaleido.messages.peer`; `1234567890`,
`true` or `1e5` would arrive as a number or a boolean and kill every result of the request).
Otherwise the request gets a fresh id, and one log line names both.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import trio

from kaleido.http.body import BODY_DEADLINE, MAX_BODY_BYTES
from kaleido.http.connection import SEND_TIMEOUT
from kaleido.http.proxies import TrustedProxies
from kaleido.logs import correlation, get_logger
from kaleido.messages import usable_correlation_id

log = get_logger("kaleido.http")

HEADER = b"x-correlation-id"
# Callers' ids that are safe to log: anything else is not even quoted back.
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class CorrelationIdMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER)
        loggable = given.decode() if given and _VALID_ID.match(given) else None
        cid_in = usable_correlation_id(loggable)
        with correlation(cid_in) as cid:
            scope.setdefault("state", {})["correlation_id"] = cid
            if loggable is not None and cid_in is None:
                log.info("http.correlation_id_replaced", caller_correlation_id=loggable)

            async def send_with_id(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers.append((HEADER, cid.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_id)


# Probes answer whatever the load: a load balancer must not take a busy process for a dead one.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})
_BUSY = b'{"error": "too many requests in flight; retry shortly"}'
_JSON = (b"content-type", b"application/json")


async def _answer(send: Any, status: int, body: bytes, *headers: tuple[bytes, bytes]) -> None:
    length = (b"content-length", b"%d" % len(body))
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, length, *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """What one request may take: its body whole within BODY_DEADLINE and MAX_BODY_BYTES
    (408 / 413), then one of `max_in_flight` slots while it is handled (else a 503 at once),
    and SEND_TIMEOUT per piece of its answer.

    A request holds a slot only once its body has arrived: a client that declares a body and
    never sends it holds a connection (capped per client), never a slot. The slot is given back
    however the request ends (answered, failed, cancelled because the client went away); the
    count is `in_flight`. `/healthz` and `/readyz` take no slot and are never refused."""

    def __init__(self, app: Any, max_in_flight: int) -> None:
        # Settings.max_in_flight: about what one process serves within its normal latency.
        # Every request in flight lengthens each turn of the event loop, a refusal's included,
        # so the cap, not a queue, keeps a 503 quick (docs/security.md, "Overload").
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            reason = f"body too large: {int(declared)} bytes, limit {MAX_BODY_BYTES}"
            await _answer(send, 413, _error(reason), (b"connection", b"close"))
            return
        body = bytearray()
        with trio.move_on_after(BODY_DEADLINE) as late:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # nobody is left to answer
                body += message.get("body", b"")
                if len(body) > MAX_BODY_BYTES:
                    reason = f"body too large: over {MAX_BODY_BYTES} bytes"
                    await _answer(send, 413, _error(reason), (b"connection", b"close"))
                    return
                if not message.get("more_body", False):
                    break
        if late.cancelled_caught:
            reason = f"body not received within {BODY_DEADLINE:g} s"
            await _answer(send, 408, _error(reason), (b"connection", b"close"))
            return
        if self.in_flight >= self.max_in_flight:
            await _answer(send, 503, _BUSY, (b"retry-after", b"1"))
            return
        self.in_flight += 1
        try:
            await self._handle(scope, bytes(body), receive, send)
        finally:
            self.in_flight -= 1

    async def _handle(self, scope: Any, body: bytes, receive: Any, send: Any) -> None:
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Any:
            return pending.pop() if pending else await receive()

        if scope.get("http_version") != "2":
            # HTTP/1.1 writes straight to the socket, which SEND_TIMEOUT bounds already.
            await self.app(scope, replay, send)
            return
        with trio.CancelScope() as request:
            # HTTP/2 waits for the client's flow-control window above the socket: bound it here.

            async def bounded_send(message: Any) -> None:
                with trio.move_on_after(SEND_TIMEOUT) as stuck:
                    await send(message)
                if stuck.cancelled_caught:
                    request.cancel()  # the client takes nothing in: give the request up
                    await trio.lowlevel.checkpoint()

            await self.app(scope, replay, bounded_send)


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


class ProxyHeaders:
    """The client address and scheme behind a trusted proxy (kaleido.http.proxies): rewrites
    the scope's `client` and `scheme`, so logs, per-client limits and the console cookie's
    `Secure` see the real ones."""

    def __init__(self, app: Any, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.proxies.networks:
            peer = scope.get("client")
            host, scheme = self.proxies.resolve(
                peer[0] if peer else None, scope["scheme"], scope["headers"]
            )
            if host != (peer[0] if peer else None) or scheme != scope["scheme"]:
                scope = {**scope, "client": (host, 0), "scheme": scheme}
        await self.app(scope, receive, send)
