"""Admin routes over the streams: `GET /v1/admin/streams` and
`POST /v1/admin/dlq/{stream}/replay` (both need the admin bearer token).

A replay without ids puts back at most `?limit=` (default and most: REPLAY_LIMIT) of the dead
letters the DLQ held when the call began, and answers `"more": true` when older ones remain;
it stops when the client goes away (the connection's requests are cancelled then)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.admin import require_admin
from kaleido.http.bodies import ReplayIds, structure_body
from kaleido.http.body import read_json
from kaleido.http.errors import BadRequest
from kaleido.messages import INBOUND_STREAMS
from kaleido.ops.streams import read_streams
from kaleido.service import Service
from kaleido.streams import dlq_replay, dlq_replay_all
from kaleido.streams.dlq import REPLAY_LIMIT


async def list_streams(request: Request) -> Response:
    require_admin(request)
    service: Service = request.app.state.service
    statuses = await read_streams(service.backends.redis, service.backends.keys)
    return JSONResponse({"streams": [s.as_json() for s in statuses]})


def dlq_stream_name(request: Request) -> str:
    """The `{stream}` path parameter, or a 404 naming the streams that have a DLQ."""
    stream = str(request.path_params["stream"])
    if stream not in INBOUND_STREAMS:
        raise BadRequest(
            f"no dead-letter queue for stream {stream!r}; "
            f"valid streams: {', '.join(INBOUND_STREAMS)}",
            404,
        )
    return stream


def parse_replay_ids(payload: Any) -> list[str]:
    # A repeat would find nothing to replay.
    return list(dict.fromkeys(structure_body(payload, ReplayIds).ids))


async def replay_dlq(request: Request) -> Response:
    require_admin(request)
    stream = dlq_stream_name(request)
    limit = replay_limit(request)  # checked even when ids make it moot: a bad one is a 400
    ids: list[str] | None = None
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        ids = parse_replay_ids(await read_json(request))
    service: Service = request.app.state.service
    redis, keys = service.backends.redis, service.backends.keys
    if ids is not None:
        new_ids = await dlq_replay(redis, keys, stream, ids)
        return JSONResponse(
            {"stream": stream, "replayed": len(new_ids), "newIds": new_ids, "more": False}
        )
    report = await dlq_replay_all(redis, keys, stream, limit=limit)
    return JSONResponse(
        {
            "stream": stream,
            "replayed": report.replayed,
            "newIds": report.new_ids,
            "more": report.more,
        }
    )


def replay_limit(request: Request) -> int:
    """`?limit=N` (1 to REPLAY_LIMIT), default REPLAY_LIMIT; a 400 naming it otherwise."""
    text = request.query_params.get("limit")
    if text is None:
        return REPLAY_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text[:9]) <= REPLAY_LIMIT:
        raise BadRequest(f"limit: expected a whole number from 1 to {REPLAY_LIMIT}, "
                         f"got {text[:20]!r}")  # fmt: skip
    return int(text)


routes = [
    Route("/v1/admin/streams", list_streams, methods=["GET"]),
    Route("/v1/admin/dlq/{stream}/replay", replay_dlq, methods=["POST"]),
]
