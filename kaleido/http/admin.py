"""Bearer-token guard of the admin routes: 403 while no token is configured (the admin routes
are disabled: no header could help), else 401 without a token and 403 with a wrong one."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from kaleido.http.errors import BadRequest


def require_admin(request: Request) -> None:
    configured = request.app.state.service.backends.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if not configured:
        raise BadRequest("admin routes are disabled: KALEIDO_ADMIN_TOKEN is not set", 403)
    if scheme.lower() != "bearer" or not given.strip():
        raise BadRequest("admin route: missing 'Authorization: Bearer <token>' header", 401)
    if not hmac.compare_digest(given.strip().encode(), configured.encode()):
        raise BadRequest("admin route: wrong token", 403)
