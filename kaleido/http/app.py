"""The two ASGI applications and their hypercorn servers: the public one (the `/v1` user
routes) and the ops one (`/metrics`, the admin routes and the `/ops` console); both answer
`/healthz` and `/readyz`, which load balancers probe on the public port."""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.middleware import Middleware

from kaleido.http import console, health, metrics, posts, streams_admin, views
from kaleido.http.auth import Authenticator
from kaleido.http.connections import serving_with_cap
from kaleido.http.errors import EXCEPTION_HANDLERS
from kaleido.http.middleware import CorrelationIdMiddleware, InFlightLimit
from kaleido.service import Service

# Seconds a connection may stay silent mid-request (headers or body) before it is closed.
READ_TIMEOUT = 10


def create_app(service: Service) -> Starlette:
    """The public application: `/v1` user routes, `/healthz`, `/readyz`."""
    return _app(service, [*health.routes, *views.routes, *posts.routes])


def create_ops_app(service: Service) -> Starlette:
    """The operators' application: `/metrics`, the admin routes, the `/ops` console,
    `/healthz`, `/readyz`."""
    routes = [*health.routes, *metrics.routes, *views.admin_routes, *streams_admin.routes]
    app = _app(service, [*routes, *console.routes])
    app.state.console_keys = console.console_keys(app.state.auth)
    return app


def _app(service: Service, routes: list[Any]) -> Starlette:
    app = Starlette(
        routes=routes,
        middleware=[Middleware(InFlightLimit), Middleware(CorrelationIdMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.service = service
    app.state.auth = Authenticator.from_settings(service.backends.settings)
    return app


def bind_address(host: str, port: int) -> str:
    """hypercorn's form of HOST:PORT (IPv6 hosts in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_http(
    app: Any,
    bind: str,
    shutdown: trio.Event,
    max_connections: int | None = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on `bind` (HOST:PORT, or `fd://N`: a listening socket inherited from the worker
    supervisor) until `shutdown` is set, then drain open requests (hypercorn's graceful
    timeout). Past `max_connections` open connections, new ones are answered 503."""
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 5.0
    config.keep_alive_timeout = 30.0
    config.read_timeout = READ_TIMEOUT  # a connection that sends nothing for this long is closed
    with contextlib.ExitStack() as stack:
        if max_connections is not None:
            stack.enter_context(serving_with_cap(max_connections))
        await serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)
