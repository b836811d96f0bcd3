"""View routes: record views (202 once durable), read exact totals, trigger a sync."""

from __future__ import annotations

from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.admin import require_admin, user_caller
from kaleido.http.auth import OPEN, Caller, Forbidden
from kaleido.http.bodies import MAX_VIEWS_PER_REQUEST, View, structure_body
from kaleido.http.body import path_id, read_json
from kaleido.http.errors import BadRequest
from kaleido.service import Service
from kaleido.views.unknown_posts import UnknownPostBudget


def parse_views(payload: Any, caller: Caller = OPEN) -> list[tuple[int, int]]:
    """`{"userId", "postId"}` or a list of them → (user, post) pairs; BadRequest names the
    first bad item and field. A user token's items may omit `userId` (the token's user); one
    naming another user is a 403."""
    if isinstance(payload, list):
        if not payload:
            raise BadRequest("body: expected a view or a non-empty list of views")
        if len(payload) > MAX_VIEWS_PER_REQUEST:
            raise BadRequest(
                f"body: {len(payload)} views, limit {MAX_VIEWS_PER_REQUEST} per request"
            )
        items = [_own_user(item, caller) for item in payload]
        views = structure_body(items, list[View], "body")
    else:
        views = [structure_body(_own_user(payload, caller), View, "body")]
    for index, view in enumerate(views):
        if not caller.acts_for(view.user_id):
            where = f"[{index}]" if isinstance(payload, list) else ""
            raise Forbidden(
                f"body{where}.userId: {view.user_id} is not the token's user ({caller.user_id})"
            )
    return [(view.user_id, view.post_id) for view in views]


def _own_user(item: object, caller: Caller) -> object:
    """A user token's view without a userId is the token user's."""
    if isinstance(item, dict) and item.get("userId") is None and caller.user_id is not None:
        return {**item, "userId": caller.user_id}
    return item


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
