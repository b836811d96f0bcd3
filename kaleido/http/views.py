"""View routes: record views (202 once durable), read exact totals, trigger a sync."""

from __future__ import annotations

from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.admin import require_admin
from kaleido.http.body import path_id, read_json
from kaleido.http.errors import BadRequest
from kaleido.service import Service
from kaleido.views.model import check_id

# One request may carry many views; beyond this, split the list.
MAX_VIEWS_PER_REQUEST = 10_000


def parse_views(payload: Any) -> list[tuple[int, int]]:
    """`{"userId", "postId"}` or a list of them → (user, post) pairs; BadRequest names the
    first bad item and field."""
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
        try:
            user = check_id(item.get("userId"), f"body{where}.userId")
            post = check_id(item.get("postId"), f"body{where}.postId")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        views.append((user, post))
    return views


async def post_views(request: Request) -> Response:
    service: Service = request.app.state.service
    views = parse_views(await read_json(request))
    result = await service.tracker.record_and_wait(views)
    return JSONResponse(
        {"accepted": result.accepted, "counted": result.counted, "duplicates": result.duplicates},
        status_code=202,
    )


async def get_post_views(request: Request) -> Response:
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
    Route("/v1/admin/sync", admin_sync, methods=["POST"]),
]
