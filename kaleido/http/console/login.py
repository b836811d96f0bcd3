"""`/ops/login`: a form that takes the admin token (or an admin JWT) and sets the session cookie
(HttpOnly, SameSite=Strict, Secure over https, path /ops; 12 h, or less when the JWT expires
sooner); `/ops/logout` clears it. A wrong credential is a 401 page with the form again."""

from __future__ import annotations

import time

import jwt
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaleido.http.auth import Authenticator
from kaleido.http.console.guard import Access, Form, check_origin, read_form, session_keys
from kaleido.http.console.render import error_page, page, secure
from kaleido.http.console.session import COOKIE, LIFETIME
from kaleido.http.errors import BadRequest

HOME = "/ops"


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (`//host`, `/\\host`, `https:`)."""
    if not target or not target.startswith(HOME) or any(c in target for c in "\\\r\n"):
        return HOME
    if target != HOME and not target.startswith((HOME + "/", HOME + "?")):
        return HOME
    return target


def _form_page(request: Request, status: int, problem: str | None, next_path: str) -> Response:
    return page(request, "login.html", status, problem=problem, next=next_path, nav=False)


async def login_form(request: Request) -> Response:
    try:
        session_keys(request)
    except BadRequest as exc:
        return secure(error_page(request, exc.status, str(exc)))
    return _form_page(request, 200, None, safe_next(request.query_params.get("next")))


def _expiry(token: str, kind: str, now: float) -> int:
    """12 h from now; for a JWT no later than its own expiry (its signature is checked)."""
    expires = int(now) + LIFETIME
    if kind == "user":
        claims = jwt.decode(token, options={"verify_signature": False})
        expires = min(expires, int(claims["exp"]))
    return expires


async def login(request: Request) -> Response:
    try:
        keys = session_keys(request)
        check_origin(request)
        form: Form = await read_form(request)
    except BadRequest as exc:
        return secure(error_page(request, exc.status, str(exc)))
    next_path = safe_next((form.get("next") or [""])[0])
    token = (form.get("token") or [""])[0].strip()
    auth: Authenticator = request.app.state.auth
    try:
        if not token or any(c.isspace() for c in token):
            raise BadRequest("no token given", 401)
        caller = auth.admin_route(f"Bearer {token}")
    except BadRequest:
        problem = "Not signed in: that is neither the admin token nor a valid JWT with ROLE_ADMIN."
        return _form_page(request, 401, problem, next_path)
    now = time.time()
    expires = _expiry(token, caller.kind, now)
    _, cookie = keys.issue(caller.kind, expires)
    response = RedirectResponse(next_path, 303)
    response.set_cookie(
        COOKIE, cookie, max_age=max(1, expires - int(now)),
        path=HOME, secure=request.url.scheme == "https", httponly=True, samesite="strict",
    )  # fmt: skip
    return secure(response)


async def logout(request: Request, access: Access, form: Form) -> Response:
    response = RedirectResponse(f"{HOME}/login", 303)
    response.delete_cookie(COOKIE, path=HOME, httponly=True, samesite="strict")
    return response
