"""The HTTP benchmarks' reference app: Kaleido's `POST /v1/views` route without its backends
(the same body reading and validation, a 202 with the same reply), served by uvicorn and by
hypercorn's trio worker beside the real service to show what bounds one process."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.body import read_json
from kaleido.http.views import parse_views


async def post_views(request: Request) -> Response:
    views = parse_views(await read_json(request))
    reply = {"accepted": len(views), "counted": len(views), "duplicates": 0}
    return JSONResponse(reply, status_code=202)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/views", post_views, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
