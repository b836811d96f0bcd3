"""`/ops/login`: a form that takes the admin token (or an admin JWT) and starts a session
(kaleido.http.console.session: 12 h, or less when the JWT expires sooner); `/ops/logout` ends
it, `/ops/logout/everywhere` ends every session (every browser, every worker).

Sign-in attempts are counted per client address (kaleido.http.console.store): past a few a
minute the client waits for the next minute (429), and after repeated failures it is locked out
for a while; every failure is logged (`console.signin_failed`) with the client's address. A
wrong credential is a 401 page with the form again.
"""

from __future__ import annotations

import time

import jwt
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaleido.dev_token import dev_token_file
from kaleido.errors import BackendError, TransientError
from kaleido.http.auth import Authenticator
from kaleido.http.console.guard import (
    Access,
    ConsoleState,
    Form,
    check_attempt,
    check_origin,
    client_address,
    console_state,
    cookie_rule,
    read_form,
    signin_failed,
)
from kaleido.http.console.render import error_page, page, secure
from kaleido.http.console.session import LIFETIME
from kaleido.http.errors import BadRequest
from kaleido.logs import get_logger
from kaleido.service import Service

log = get_logger("kaleido.http.console")

HOME = "/ops"
PLAIN_HTTP = (
    "Over plain http the console signs in only from this machine (loopback): a browser drops "
    "the Secure session cookie anywhere else. Reach it over https (a TLS proxy named in "
    "KALEIDO_TRUSTED_PROXIES) or through an SSH tunnel."
)


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (`//host`, `/\\host`, `https:`)."""
    if not target or not target.startswith(HOME) or any(c in target for c in "\\\r\n"):
        return HOME
    if target != HOME and not target.startswith((HOME + "/", HOME + "?")):
        return HOME
    return target


def _form_page(request: Request, status: int, problem: str | None, next_path: str) -> Response:
    # A dev start (`make run`) made the admin token: say where it is, never what it is.
    service: Service = request.app.state.service
    token_file = dev_token_file(service.backends.settings)
    return page(
        request, "login.html", status, problem=problem, next=next_path, nav=False,
        dev_token_file=str(token_file) if token_file else None,
    )  # fmt: skip


async def login_form(request: Request) -> Response:
    try:
        console_state(request)
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
        state = console_state(request)
        check_origin(request)
        form: Form = await read_form(request)
        return await _sign_in(request, state, form)
    except BadRequest as exc:
        response = error_page(request, exc.status, str(exc))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return secure(response)
    except BackendError as exc:
        status = 503 if isinstance(exc, TransientError) else 500
        return secure(error_page(request, status, f"A backend did not answer: {exc}"))


async def _sign_in(request: Request, state: ConsoleState, form: Form) -> Response:
    next_path = safe_next((form.get("next") or [""])[0])
    rule = cookie_rule(request)
    if rule.secure and request.url.scheme != "https":
        return _form_page(request, 403, PLAIN_HTTP, next_path)
    await check_attempt(request, state)
    token = (form.get("token") or [""])[0].strip()
    auth: Authenticator = request.app.state.auth
    try:
        if not token or any(c.isspace() for c in token):
            raise BadRequest("no token given", 401)
        caller = auth.admin_route(f"Bearer {token}")
    except BadRequest:
        await signin_failed(request, state, "form")
        problem = "Not signed in: that is neither the admin token nor a valid JWT with ROLE_ADMIN."
        return _form_page(request, 401, problem, next_path)
    now = time.time()
    session, cookie = state.keys.issue(caller.kind, _expiry(token, caller.kind, now))
    await state.store.add(session, now)
    await state.store.succeeded(client_address(request))
    log.info("console.signed_in", client=client_address(request), kind=caller.kind)
    response = RedirectResponse(next_path, 303)
    response.set_cookie(
        rule.name, cookie, max_age=max(1, session.expires - int(now)),
        path=rule.path, secure=rule.secure, httponly=True, samesite="strict",
    )  # fmt: skip
    return secure(response)


def _signed_out(request: Request) -> Response:
    rule = cookie_rule(request)
    response = RedirectResponse(f"{HOME}/login", 303)
    response.delete_cookie(
        rule.name, path=rule.path, secure=rule.secure, httponly=True, samesite="strict"
    )
    return response


async def logout(request: Request, access: Access, form: Form) -> Response:
    """End this session: its cookie, wherever copied, no longer opens anything."""
    if access.session is not None:
        await console_state(request).store.end(access.session)
    return _signed_out(request)


async def logout_everywhere(request: Request, access: Access, form: Form) -> Response:
    """End every console session (bearer-header scripts are not sessions: unaffected)."""
    ended = await console_state(request).store.end_all()
    log.warning("console.signed_out_everywhere", client=client_address(request), sessions=ended)
    return _signed_out(request)
