"""Who may use the console, and which posts it accepts.

- A page needs the admin credential: the session cookie of a login (kaleido.http.console.
  session), or an `Authorization: Bearer` header as the JSON admin routes take it (scripts).
  Without either, a GET is redirected to the login form; a wrong bearer is a 401/403 page.
- No admin secret configured: every console page is a 403 saying so, as the admin routes do.
- A POST must be a urlencoded form of at most MAX_FORM_BYTES; its `Origin`, when sent, must be
  this host's; one made with a session must carry that session's CSRF token. Refusals are 403
  pages that say which check failed.

`console_route` wraps a page handler with all of this, turns errors into HTML error pages
(a backend outage is a 503 page) and adds the security headers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, quote, urlsplit

import attrs
import trio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaleido.errors import BackendError, TransientError
from kaleido.http.auth import Authenticator
from kaleido.http.console.render import error_page, secure
from kaleido.http.console.session import COOKIE, Session, SessionKeys
from kaleido.http.errors import BadRequest

MAX_FORM_BYTES = 64 * 1024
FORM_DEADLINE = 10.0
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


def session_keys(request: Request) -> SessionKeys:
    keys: SessionKeys | None = request.app.state.console_keys
    if keys is None:
        raise BadRequest(DISABLED, 403)
    return keys


def authenticate(request: Request) -> Access:
    keys = session_keys(request)
    header = request.headers.get("authorization")
    if header:
        auth: Authenticator = request.app.state.auth
        return Access(auth.admin_route(header).kind)
    session = keys.verify(request.cookies.get(COOKIE), time.time())
    if session is None:
        raise LoginRequired
    request.state.csrf = keys.csrf_token(session)
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
    if not session_keys(request).csrf_ok(access.session, token):
        raise BadRequest(
            "refused: the form's CSRF token is missing or belongs to another session. "
            "Reload the page and submit it again.",
            403,
        )


async def read_form(request: Request) -> Form:
    """The urlencoded body, or a 4xx naming the problem."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise BadRequest(f"expected a form (application/x-www-form-urlencoded), got "
                         f"{media_type[:80] or 'none'}", 415)  # fmt: skip
    body = bytearray()
    with trio.move_on_after(FORM_DEADLINE) as late:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_FORM_BYTES:
                raise BadRequest(f"form too large: over {MAX_FORM_BYTES} bytes", 413)
    if late.cancelled_caught:
        raise BadRequest(f"form not received within {FORM_DEADLINE:g} s", 408)
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
            access = authenticate(request)
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
