"""Reading request bodies: size-limited JSON, with errors that say what is wrong and where."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from kaleido.http.errors import BadRequest
from kaleido.views.model import check_id

# Far above any legitimate body (a list of 10k views is ~400 KB), far below harm.
MAX_BODY_BYTES = 2 * 1024 * 1024


async def read_json(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(f"body too large: {declared} bytes, limit {MAX_BODY_BYTES}", 413)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"body too large: over {MAX_BODY_BYTES} bytes", 413)
    if not body:
        raise BadRequest("body: expected JSON, got an empty body")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body: invalid JSON ({exc})") from None


def path_id(request: Request, name: str) -> int:
    """A positive 64-bit id from the path, or a 400 naming it."""
    try:
        return check_id(request.path_params[name], name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
