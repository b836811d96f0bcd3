"""ASGI middleware: a correlation id for every request (`X-Correlation-ID`, or a new one), and
a cap on the requests in flight.

A caller's id is kept only if Kaleido may forward it to the ML service: the header's alphabet,
and text that the ML service's field decoding leaves text (`kaleido.messages.peer`; `1234567890`,
`true` or `1e5` would arrive as a number or a boolean and kill every result of the request).
Otherwise the request gets a fresh id, and one log line names both.
"""

from __future__ import annotations

import re
from typing import Any

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


# Requests one listener of one process handles at once; beyond, a quick 503 is better than a
# queue that grows until memory or every client's timeout runs out.
MAX_IN_FLIGHT = 1000
_BUSY = b'{"error": "too many requests in flight; retry shortly"}'


class InFlightLimit:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.in_flight = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= MAX_IN_FLIGHT:
            headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": _BUSY})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
