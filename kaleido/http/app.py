"""The two ASGI applications: the public one (the `/v1` user routes) and the ops one
(`/metrics`, the admin routes and the `/ops` console); both answer `/healthz` and `/readyz`,
which load balancers probe on the public port. kaleido.http.server serves them."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from kaleido.http import console, health, metrics, openapi, posts, streams_admin, views
from kaleido.http.auth import Authenticator
from kaleido.http.errors import EXCEPTION_HANDLERS
from kaleido.http.middleware import CorrelationIdMiddleware, ProxyHeaders, RequestLimits
from kaleido.http.proxies import TrustedProxies
from kaleido.http.server import ServerLimits
from kaleido.service import Service
from kaleido.settings import Settings
from kaleido.views.unknown_posts import UnknownPostBudget


def create_app(service: Service) -> Starlette:
    """The public application: `/v1` user routes, `/healthz`, `/readyz`, `/openapi.json`."""
    document = openapi.route(openapi.public_document())
    app = _app(service, [*health.routes, document, *views.routes, *posts.routes])
    backends = service.backends
    app.state.unknown_posts = UnknownPostBudget(backends.postgres, backends.redis, backends.keys)
    return app


def create_ops_app(service: Service) -> Starlette:
    """The operators' application: `/metrics`, the admin routes, the `/ops` console,
    `/healthz`, `/readyz`, `/openapi.json`."""
    routes = [*health.routes, openapi.route(openapi.ops_document()), *metrics.routes]
    routes += [*views.admin_routes, *streams_admin.routes]
    app = _app(service, [*routes, *console.routes])
    app.state.console = console.console_state(app.state.auth, service)
    return app


def _app(service: Service, routes: list[Any]) -> Starlette:
    settings = service.backends.settings
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ProxyHeaders, proxies=TrustedProxies.of(settings.trusted_proxies)),
            Middleware(RequestLimits, max_in_flight=settings.max_in_flight),
            Middleware(CorrelationIdMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.service = service
    app.state.auth = Authenticator.from_settings(settings)
    app.state.readiness = health.Readiness()
    return app


def server_limits(settings: Settings) -> ServerLimits:
    """What each listener allows, from the settings."""
    return ServerLimits(
        max_connections=settings.max_connections,
        max_connections_per_client=settings.max_connections_per_client,
        http2=settings.http2 == "on",
        trusted_proxies=TrustedProxies.of(settings.trusted_proxies),
    )
