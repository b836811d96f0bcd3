"""The ASGI application and its hypercorn server."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.middleware import Middleware

from kaleido.http import health, metrics, posts, streams_admin, views
from kaleido.http.errors import EXCEPTION_HANDLERS
from kaleido.http.middleware import CorrelationIdMiddleware
from kaleido.service import Service


def create_app(service: Service) -> Starlette:
    app = Starlette(
        routes=[
            *health.routes,
            *metrics.routes,
            *views.routes,
            *posts.routes,
            *streams_admin.routes,
        ],
        middleware=[Middleware(CorrelationIdMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.service = service
    return app


def bind_address(host: str, port: int) -> str:
    """hypercorn's form of HOST:PORT (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_http(
    app: Any,
    bind: str,
    shutdown: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on `bind` (HOST:PORT, or `fd://N`: a listening socket inherited from the worker
    supervisor) until `shutdown` is set, then drain open requests (hypercorn's graceful
    timeout)."""
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 5.0
    config.keep_alive_timeout = 30.0
    await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)
