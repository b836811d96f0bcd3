"""Who may use the console, and which posts it accepts.

- A page needs the admin credential: the session cookie of a login (kaleido.http.console.
  session) whose session Redis still keeps, or an `Authorization: Bearer` header as the JSON
  admin routes take it (scripts). Without either, a GET is redirected to the login form; a
  wrong bearer is a 401/403 page, and counts as a failed sign-in of the client's address
  (kaleido.http.console.store: slowed, then locked out).
- No admin secret configured: every console page is a 403 saying so, as the admin routes do.
- A POST must be a urlencoded form of at most MAX_FORM_BYTES; its `Origin`, when sent, must be
  this host's; one made with a session must carry that session's CSRF token. Refusals are 403
  pages that say which check failed.

`console_route` wraps a page handler with all of this, turns errors into HTML error pages
(a backend outage is a 503 page) and adds the security headers.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote, urlsplit

import attrs
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaleido.errors import BackendError, TransientError
from kaleido.http.auth import Authenticator
from kaleido.http.body import read_body
from kaleido.http.console.render import error_page, secure
from kaleido.http.console.session import (
    LOOPBACK_COOKIE,
    SECURE_COOKIE,
    Session,
    SessionKeys,
)
from kaleido.http.console.store import ConsoleStore, Refusal
from kaleido.http.errors import BadRequest
from kaleido.logs import get_logger

log = get_logger("kaleido.http.console")

MAX_FORM_BYTES = 64 * 1024
DISABLED = (
    "The ops console is disabled: neither KALEIDO_ADMIN_TOKEN nor KALEIDO_JWT_SECRET is set, "
    "so no credential could open it."
)

Form = dict[str, list[str]]


class LoginRequired(Exception):
    """No credential at all: send the browser to the login form."""


@attrs.frozen
class Access:
    """An admitted caller: by session (a browser) or by bearer header (a script)."""

    kind: str
    session: Session | None = None


@attrs.frozen
class ConsoleState:
    keys: SessionKeys
    store: ConsoleStore


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState | None = request.app.state.console
    if state is None:
        raise BadRequest(DISABLED, 403)
    return state


def client_address(request: Request) -> str:
    """The client's address (behind a trusted proxy: the one it forwarded)."""
    return request.client.host if request.client and request.client.host else "unknown"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class CookieRule:
    """The session cookie of one request's context."""

    name: str
    path: str
    secure: bool


def cookie_rule(request: Request) -> CookieRule:
    """`__Host-kaleido_ops` (Secure) unless the client is on loopback over plain http."""
    if request.url.scheme == "http" and _loopback(client_address(request)):
        return CookieRule(LOOPBACK_COOKIE, "/ops", secure=False)
    return CookieRule(SECURE_COOKIE, "/", secure=True)


class SignInRefused(BadRequest):
    """429: too many sign-in attempts from this address (slowed, or locked out)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(
            f"Too many sign-in attempts from your address ({refusal.reason}): try again in "
            f"{refusal.retry_after} s.",
            429,
        )
        self.headers = {"Retry-After": str(refusal.retry_after)}


async def check_attempt(request: Request, state: ConsoleState, *, counted: bool = True) -> None:
    """Count a sign-in attempt of the request's client (`counted`: a sign-in, not a request
    carrying a credential); SignInRefused when it must wait."""
    client = client_address(request)
    store = state.store
    refusal = await (store.attempt(client, time.time()) if counted else store.lockout(client))
    if refusal is not None:
        log.warning("console.signin_refused", client=client, reason=refusal.reason,
                    retry_after=refusal.retry_after)  # fmt: skip
        raise SignInRefused(refusal)


async def signin_failed(request: Request, state: ConsoleState, how: str) -> None:
    client = client_address(request)
    failures = await state.store.failed(client)
    log.warning("console.signin_failed", client=client, how=how, failures=failures,
                path=request.url.path)  # fmt: skip


async def authenticate(request: Request) -> Access:
    state = console_state(request)
    header = request.headers.get("authorization")
    if header:
        await check_attempt(request, state, counted=False)  # scripts: only a lockout stops them
        auth: Authenticator = request.app.state.auth
        try:
            return Access(auth.admin_route(header).kind)
        except BadRequest:
            await signin_failed(request, state, "bearer")
            raise
    rule = cookie_rule(request)
    session = state.keys.read(request.cookies.get(rule.name), time.time())
    if session is None or not await state.store.live(session):
        raise LoginRequired
    request.state.csrf = state.keys.csrf_token(session)
    return Access(session.kind, session)


def check_origin(request: Request) -> None:
    """The `Origin` of a post, when the browser sends one, names this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
        raise BadRequest(
            f"refused: this form was posted from {origin[:100]!r}, not from this console "
            f"({host[:100]}). Open the console's own page and submit it there.",
            403,
        )


def check_csrf(request: Request, access: Access, form: Form) -> None:
    if access.session is None:
        return  # a bearer header: no browser sends one on its own
    token = (form.get("csrf") or [""])[0]
    if not console_state(request).keys.csrf_ok(access.session, token):
        raise BadRequest(
            "refused: the form's CSRF token is missing or belongs to another session. "
            "Reload the page and submit it again.",
            403,
        )


async def read_form(request: Request) -> Form:
    """The urlencoded body, or a 4xx naming the problem."""
    body = await read_body(request, "application/x-www-form-urlencoded", "form", MAX_FORM_BYTES)
    try:
        return parse_qs(body.decode(), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"form: not valid ({str(exc)[:100]})") from None


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ops/login?next={quote(target, safe='')}", 303)


Handler = Callable[[Request, Access, Form], Awaitable[Response]]


def console_route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint for `handler`: admitted callers only, checked posts, HTML errors."""

    async def endpoint(request: Request) -> Response:
        try:
            access = await authenticate(request)
            form: Form = {}
            if request.method == "POST":
                check_origin(request)
                form = await read_form(request)
                check_csrf(request, access, form)
            response = await handler(request, access, form)
        except LoginRequired:
            if request.method != "GET":
                return error_page(request, 401, "Sign in first: this session has ended.")
            return secure(login_redirect(request))
        except BadRequest as exc:
            response = error_page(request, exc.status, str(exc))
            for name, value in (exc.headers or {}).items():
                response.headers[name] = value
        except BackendError as exc:
            status = 503 if isinstance(exc, TransientError) else 500
            response = error_page(request, status, f"A backend did not answer: {exc}")
        return secure(response)

    endpoint.__name__ = getattr(handler, "__name__", "console")
    return endpoint
