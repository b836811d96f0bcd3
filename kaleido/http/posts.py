"""Post and profile picture routes: store in PostgreSQL and announce to the ML service.

A change and its announcements commit together (kaleido.outbox): a 2xx means both are durable,
and the ML service hears of them as soon as Redis takes them. Every bad input is a 4xx naming
the field (`media[1].mediaUrl: ...`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kaleido.http.admin import user_caller
from kaleido.http.auth import Caller, Forbidden
from kaleido.http.bodies import MediaList, PictureChange, render, structure_body
from kaleido.http.body import path_id, read_json
from kaleido.http.errors import BadRequest
from kaleido.posts import (
    Face,
    MediaItem,
    MediaRecord,
    MediaTaken,
    NewPost,
    PostExists,
    PostNotFound,
    PostRecord,
    Posts,
    check_media,
    check_media_url,
)
from kaleido.profiles import ProfilePicture
from kaleido.service import Service

# --------------------------------------------------------------------------- parsing


def _checked(media: Sequence[MediaItem], prefixes: Sequence[str]) -> tuple[MediaItem, ...]:
    """The request's own rules on a structured media list: unique ids, and the URL prefixes
    allowed (KALEIDO_MEDIA_URL_PREFIXES; none: any public https URL)."""
    try:
        check_media(media)
        for index, item in enumerate(media):
            check_media_url(item.media_url, f"media[{index}].mediaUrl", prefixes)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return tuple(media)


def parse_media(payload: Any, prefixes: Sequence[str] = ()) -> tuple[MediaItem, ...]:
    """The body's `media` list; BadRequest names the first bad item and field."""
    return _checked(structure_body(payload, MediaList).media, prefixes)


def parse_new_post(payload: Any, prefixes: Sequence[str] = ()) -> NewPost:
    post = structure_body(payload, NewPost)
    return attrs.evolve(post, media=_checked(post.media, prefixes))


def _prefixes(request: Request) -> tuple[str, ...]:
    service: Service = request.app.state.service
    return service.backends.settings.media_url_prefixes


# --------------------------------------------------------------------------- rendering


def _media_json(media: MediaRecord, caller: Caller, owner: int) -> dict[str, Any]:
    faces = [
        face if sees_suggestion(caller, owner, face) else _without_suggestion(face)
        for face in media.faces
    ]
    return {**render(media), "faces": render(faces)}


def _without_suggestion(face: Face) -> Face:
    return attrs.evolve(
        face, suggested_user_id=None, suggestion_confidence=None, matched_username=None
    )


def sees_suggestion(caller: Caller, owner: int, face: Face) -> bool:
    """Face suggestions name people: only the post's owner, the suggested user, moderators,
    admins and trusted callers see them."""
    if caller.moderates or caller.user_id == owner:
        return True
    return caller.user_id is not None and caller.user_id == face.suggested_user_id


def post_json(post: PostRecord, views: int, caller: Caller) -> dict[str, Any]:
    media = [_media_json(media, caller, post.user_id) for media in post.media]
    return {**render(post), "views": views, "media": media}


# --------------------------------------------------------------------------- routes


def _posts(request: Request) -> Posts:
    service: Service = request.app.state.service
    return service.posts


async def create_post(request: Request) -> Response:
    caller = user_caller(request)
    post = parse_new_post(await read_json(request), _prefixes(request))
    caller.require_user(post.user_id, "userId")
    try:
        done = await _posts(request).create(post)
    except (PostExists, MediaTaken) as exc:
        raise BadRequest(str(exc), 409) from None
    body = {"postId": done.post_id, "media": done.media, "announced": done.announced}
    return JSONResponse(body, status_code=201)


async def replace_post_media(request: Request) -> Response:
    caller = user_caller(request)
    post_id = path_id(request, "postId")
    media = parse_media(await read_json(request), _prefixes(request))

    def may_edit(owner: int) -> None:
        if not (caller.moderates or caller.user_id == owner):
            raise Forbidden(f"post {post_id} belongs to another user; only its owner or a "
                            "moderator may change its media")  # fmt: skip

    try:
        done = await _posts(request).replace_media(post_id, media, may_edit)
    except PostNotFound as exc:
        raise BadRequest(str(exc), 404) from None
    except MediaTaken as exc:
        raise BadRequest(str(exc), 409) from None
    return JSONResponse(
        {
            "postId": done.post_id,
            "media": done.media,
            "announced": done.announced,
            "added": done.added,
            "removed": done.removed,
        }
    )


async def change_profile_picture(request: Request) -> Response:
    caller = user_caller(request)
    user_id = path_id(request, "userId")
    caller.require_user(user_id, "profile picture")
    body = structure_body(await read_json(request), PictureChange)
    try:
        image_url = check_media_url(body.image_url, "imageUrl", _prefixes(request))
        picture = ProfilePicture(user_id, image_url, body.username, body.department)  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    service: Service = request.app.state.service
    event = await service.profiles.change_picture(picture)
    return JSONResponse(
        {"userId": user_id, "announced": 1, "requestId": event.correlation_id}, status_code=202
    )


async def get_post(request: Request) -> Response:
    caller = user_caller(request)
    post_id = path_id(request, "postId")
    service: Service = request.app.state.service
    try:
        post = await _posts(request).read(post_id)
    except PostNotFound as exc:
        raise BadRequest(str(exc), 404) from None
    total = await service.view_total(post_id)
    return JSONResponse(post_json(post, total.views, caller))


routes = [
    Route("/v1/posts", create_post, methods=["POST"]),
    Route("/v1/posts/{postId}", get_post, methods=["GET"]),
    Route("/v1/posts/{postId}/media", replace_post_media, methods=["PUT"]),
    Route("/v1/users/{userId}/profile-picture", change_profile_picture, methods=["POST"]),
]
