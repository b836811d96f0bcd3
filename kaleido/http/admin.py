"""Bearer-token guard of the admin routes: 401 without a token, 403 with a wrong one (or when
no token is configured, which disables the admin routes)."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from kaleido.http.errors import BadRequest


def require_admin(request: Request) -> None:
    configured = request.app.state.service.backends.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise BadRequest("admin route: missing 'Authorization: Bearer <token>' header", 401)
    if not configured:
        raise BadRequest("admin routes are disabled: KALEIDO_ADMIN_TOKEN is not set", 403)
    if not hmac.compare_digest(given.strip().encode(), configured.encode()):
        raise BadRequest("admin route: wrong token", 403)
