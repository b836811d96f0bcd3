"""Admin routes over the streams: `GET /v1/admin/streams` and
`POST /v1/admin/dlq/{stream}/replay` (both need the admin bearer token)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.admin import require_admin
from kaleido.http.body import read_json
from kaleido.http.errors import BadRequest
from kaleido.messages import INBOUND_STREAMS
from kaleido.ops.streams import ENTRY_ID, read_streams
from kaleido.service import Service
from kaleido.streams import dlq_replay

# Ids per replay request; a whole DLQ is replayed by sending no ids.
MAX_IDS = 10_000


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
    if not isinstance(payload, dict) or not isinstance(payload.get("ids"), list):
        raise BadRequest('body: expected {"ids": ["<dlq entry id>", ...]} or no body')
    ids = payload["ids"]
    if len(ids) > MAX_IDS:
        raise BadRequest(f"ids: {len(ids)} ids, limit {MAX_IDS}; send no body to replay all")
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not ENTRY_ID.match(value):
            raise BadRequest(f"ids[{index}]: expected a stream entry id like '1700000000000-0'")
    return [str(v) for v in ids]


async def replay_dlq(request: Request) -> Response:
    require_admin(request)
    stream = dlq_stream_name(request)
    ids: list[str] | None = None
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        ids = parse_replay_ids(await read_json(request))
    service: Service = request.app.state.service
    new_ids = await dlq_replay(service.backends.redis, service.backends.keys, stream, ids)
    return JSONResponse({"stream": stream, "replayed": len(new_ids), "newIds": new_ids})


routes = [
    Route("/v1/admin/streams", list_streams, methods=["GET"]),
    Route("/v1/admin/dlq/{stream}/replay", replay_dlq, methods=["POST"]),
]
