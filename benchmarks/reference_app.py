"""The HTTP benchmarks' reference app: Kaleido's `POST /v1/views` route without its backends
(orjson parsing and the same validation, a 202 with the same reply), served by uvicorn and by
hypercorn's trio worker beside the real service to show what bounds one process. It runs on
either event loop, so it reads the body without Kaleido's trio-only body deadline."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.views import parse_views


async def post_views(request: Request) -> Response:
    views = parse_views(orjson.loads(await request.body()))
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
