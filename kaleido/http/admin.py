"""The guard of the admin routes: the admin token, or a Kaleidoscope JWT with ROLE_ADMIN
(kaleido.http.auth). 403 while neither is configured (no header could help), else 401 without a
token and 403 with a wrong one."""

from __future__ import annotations

from starlette.requests import Request

from kaleido.http.auth import Authenticator, Caller


def require_admin(request: Request) -> Caller:
    auth: Authenticator = request.app.state.auth
    return auth.admin_route(request.headers.get("authorization"))


def user_caller(request: Request) -> Caller:
    """The caller of a `/v1` user route (an open caller when no auth is configured)."""
    auth: Authenticator = request.app.state.auth
    return auth.user_route(request.headers.get("authorization"))
