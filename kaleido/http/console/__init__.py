"""The operators' web console under `/ops` on the ops listener: server-rendered pages (no
script) over the reporter's history, the streams and the dead-letter queues, behind the admin
credential (kaleido.http.console.guard).

`routes` are added to the ops application; `console_state` makes what it keeps in
`app.state.console`: the session keys and the Redis records of sessions and sign-in attempts
(None: no admin secret, the console refuses every page).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kaleido.http.auth import Authenticator
from kaleido.http.console import dlq_pages, login, pages
from kaleido.http.console.guard import ConsoleState, console_route
from kaleido.http.console.render import secure, stylesheet
from kaleido.http.console.session import SessionKeys
from kaleido.http.console.store import ConsoleStore
from kaleido.service import Service

_CSS = stylesheet()


def console_state(auth: Authenticator, service: Service) -> ConsoleState | None:
    keys = SessionKeys.derive(auth.admin_token, auth.key)
    if keys is None:
        return None
    return ConsoleState(keys, ConsoleStore(service.backends.redis, service.backends.keys))


async def _stylesheet(request: Request) -> Response:
    response = secure(Response(_CSS, media_type="text/css"))
    response.headers["Cache-Control"] = "max-age=3600"
    return response


Endpoint = Callable[[Request], Awaitable[Response]]


def _by_method(get: Endpoint, post: Endpoint) -> Endpoint:
    """One route for a page and its form: so a 405 names both methods in `Allow`."""

    async def endpoint(request: Request) -> Response:
        return await (post if request.method == "POST" else get)(request)

    endpoint.__name__ = getattr(post, "__name__", "page")
    return endpoint


routes = [
    Route("/ops", console_route(pages.overview), methods=["GET"]),
    Route("/ops/streams", console_route(pages.streams), methods=["GET"]),
    Route("/ops/dlq", console_route(dlq_pages.dlq_index), methods=["GET"]),
    Route("/ops/dlq/{stream}", console_route(dlq_pages.dlq_list), methods=["GET"]),
    Route("/ops/dlq/{stream}/replay", console_route(dlq_pages.replay_selected), methods=["POST"]),
    Route(
        "/ops/dlq/{stream}/replay/{entry_id}",
        console_route(dlq_pages.replay_one),
        methods=["POST"],
    ),
    Route(
        "/ops/dlq/{stream}/purge",
        _by_method(console_route(dlq_pages.purge_confirm), console_route(dlq_pages.purge)),
        methods=["GET", "POST"],
    ),
    Route("/ops/login", _by_method(login.login_form, login.login), methods=["GET", "POST"]),
    Route("/ops/logout", console_route(login.logout), methods=["POST"]),
    Route("/ops/logout/everywhere", console_route(login.logout_everywhere), methods=["POST"]),
    Route("/ops/static/console.css", _stylesheet, methods=["GET"]),
]

__all__ = ["console_state", "routes"]
