"""View routes: record views (202 once durable), read exact totals, trigger a sync."""

from __future__ import annotations

from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.admin import require_admin, user_caller
from kaleido.http.auth import OPEN, Caller, Forbidden
from kaleido.http.body import path_id, read_json
from kaleido.http.errors import BadRequest
from kaleido.service import Service
from kaleido.views.model import check_id
from kaleido.views.unknown_posts import UnknownPostBudget

# One request may carry many views; beyond this, split the list.
MAX_VIEWS_PER_REQUEST = 10_000


def parse_views(payload: Any, caller: Caller = OPEN) -> list[tuple[int, int]]:
    """`{"userId", "postId"}` or a list of them → (user, post) pairs; BadRequest names the
    first bad item and field. A user token's items may omit `userId` (the token's user); one
    naming another user is a 403."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise BadRequest("body: expected a view or a non-empty list of views")
    if len(items) > MAX_VIEWS_PER_REQUEST:
        raise BadRequest(f"body: {len(items)} views, limit {MAX_VIEWS_PER_REQUEST} per request")
    views = []
    for index, item in enumerate(items):
        where = f"[{index}]" if isinstance(payload, list) else ""
        if not isinstance(item, dict):
            raise BadRequest(f"body{where}: expected an object with userId and postId")
        given = item.get("userId")
        if given is None and caller.user_id is not None:
            given = caller.user_id
        try:
            user = check_id(given, f"body{where}.userId")
            post = check_id(item.get("postId"), f"body{where}.postId")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if not caller.acts_for(user):
            raise Forbidden(
                f"body{where}.userId: {user} is not the token's user ({caller.user_id})"
            )
        views.append((user, post))
    return views


async def post_views(request: Request) -> Response:
    """202 once the views are durable. A user token's views of posts that do not exist are
    held to its hourly budget (kaleido.views.unknown_posts): those past it are refused, the
    answer says how many (`refused`), and when that is every view of the request, a 429. The
    service token (a trusted backend's batch ingest) and an API without auth are not held."""
    service: Service = request.app.state.service
    caller = user_caller(request)
    views = parse_views(await read_json(request), caller)
    refused = 0
    if caller.kind == "user" and caller.user_id is not None:
        budget: UnknownPostBudget = request.app.state.unknown_posts
        admitted = await budget.admit(caller.user_id, views)
        if admitted.refused:
            service.metrics.views.labels("refused_unknown_post").inc(admitted.refused)
        if not admitted.views and admitted.unchecked:
            raise BadRequest("views of posts that do not exist cannot be checked now (a "
                             "backend does not answer); retry shortly", 503)  # fmt: skip
        if not admitted.views:
            raise TooManyUnknown(budget.per_hour, admitted.retry_after)
        views, refused = admitted.views, admitted.refused
    result = await service.tracker.record_and_wait(views)
    body = {"accepted": result.accepted, "counted": result.counted, "duplicates": result.duplicates}
    if refused:
        body["refused"] = refused
    return JSONResponse(body, status_code=202)


class TooManyUnknown(BadRequest):
    def __init__(self, per_hour: int, retry_after: int) -> None:
        super().__init__(
            f"views of posts that do not exist: {per_hour} per user per hour, used up; "
            f"retry in {retry_after} s",
            429,
        )
        self.headers = {"Retry-After": str(retry_after)}


async def get_post_views(request: Request) -> Response:
    user_caller(request)  # any authenticated caller
    service: Service = request.app.state.service
    total = await service.view_total(path_id(request, "postId"))
    body: dict[str, object] = {"postId": total.post_id, "views": total.views}
    if total.degraded:
        body["degraded"] = "redis unreachable: views buffered in Redis are not included"
    return JSONResponse(body)


async def admin_sync(request: Request) -> Response:
    require_admin(request)
    service: Service = request.app.state.service
    done = await service.syncer.request()
    if done.report is None:
        return JSONResponse({"synced": False, "error": done.error}, status_code=503)
    return JSONResponse({"synced": True, **attrs.asdict(done.report)})


routes = [
    Route("/v1/views", post_views, methods=["POST"]),
    Route("/v1/posts/{postId}/views", get_post_views, methods=["GET"]),
]
admin_routes = [Route("/v1/admin/sync", admin_sync, methods=["POST"])]
