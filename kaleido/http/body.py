"""Reading request bodies: size-limited JSON and forms, with errors that say what is wrong and
where."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from kaleido.http.errors import BadRequest
from kaleido.views.model import check_id

# Far above any legitimate body (a list of 10k views is ~400 KB), far below harm.
MAX_BODY_BYTES = 2 * 1024 * 1024
# A whole body must arrive within this (kaleido.http.middleware.RequestLimits reads it before
# the request takes a slot, so a trickling client holds none).
BODY_DEADLINE = 10.0


async def read_body(request: Request, media_type: str, what: str, limit: int) -> bytearray:
    """The whole body of a request of `media_type`, at most `limit` bytes; a 415 or a 413
    naming the problem (`what`: how the messages call the body)."""
    sent = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if sent != media_type:
        raise BadRequest(f"expected Content-Type: {media_type}, got {sent[:80] or 'none'}", 415)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"{what} too large: {declared} bytes, limit {limit}", 413)
    body = bytearray()
    async for chunk in request.stream():  # already read whole, within BODY_DEADLINE
        body.extend(chunk)
        if len(body) > limit:
            raise BadRequest(f"{what} too large: over {limit} bytes", 413)
    return body


async def read_json(request: Request) -> Any:
    """The body as JSON. JSON only (`Content-Type: application/json`: a web page cannot make a
    browser send that cross-site without a preflight), at most MAX_BODY_BYTES, nested at most
    1024 deep, valid UTF-8 without lone surrogates; numbers beyond 64 bits come out as floats,
    which no id accepts. Every refusal is a 4xx naming the problem."""
    body = await read_body(request, "application/json", "body", MAX_BODY_BYTES)
    if not body:
        raise BadRequest("body: expected JSON, got an empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: invalid JSON ({str(exc)[:200]})") from None


def path_id(request: Request, name: str) -> int:
    """A positive 64-bit id from the path, or a 400 naming it."""
    try:
        return check_id(request.path_params[name], name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
