"""`GET /metrics`: the Prometheus text exposition of the service's registry."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kaleido.metrics import exposition
from kaleido.service import Service


async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    return Response(exposition(service.metrics), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
