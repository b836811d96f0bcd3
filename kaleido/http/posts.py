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
from kaleido.http.body import path_id, read_json
from kaleido.http.errors import BadRequest
from kaleido.messages import utc_timestamp
from kaleido.posts import (
    MAX_MEDIA,
    Face,
    Insights,
    MediaItem,
    MediaRecord,
    MediaTaken,
    NewPost,
    PostExists,
    PostInsights,
    PostNotFound,
    PostRecord,
    Posts,
    check_media,
    check_media_url,
)
from kaleido.profiles import ProfilePicture
from kaleido.service import Service
from kaleido.views.model import check_id

# --------------------------------------------------------------------------- parsing


def _object(payload: Any, name: str, fields: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadRequest(f"{name}: expected an object with {fields}")
    return payload


def _id(value: object, name: str) -> int:
    try:
        return check_id(value, name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _url(value: object, name: str, prefixes: Sequence[str]) -> str:
    try:
        return check_media_url(value, name, prefixes)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def parse_media(payload: dict[str, Any], prefixes: Sequence[str] = ()) -> tuple[MediaItem, ...]:
    """The body's `media` list; BadRequest names the first bad item and field. `prefixes`:
    the URL prefixes allowed (KALEIDO_MEDIA_URL_PREFIXES; none: any public https URL)."""
    items = payload.get("media")
    if not isinstance(items, list):
        raise BadRequest("media: expected a list of {mediaId, mediaUrl} objects")
    if len(items) > MAX_MEDIA:  # before looking at the items: bounds the work
        raise BadRequest(f"media: {len(items)} items, limit {MAX_MEDIA}")
    media = []
    for index, raw in enumerate(items):
        item = _object(raw, f"media[{index}]", "mediaId and mediaUrl")
        media.append(
            MediaItem(
                _id(item.get("mediaId"), f"media[{index}].mediaId"),
                _url(item.get("mediaUrl"), f"media[{index}].mediaUrl", prefixes),
            )
        )
    try:
        check_media(media)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return tuple(media)


def parse_new_post(payload: Any, prefixes: Sequence[str] = ()) -> NewPost:
    body = _object(payload, "body", "postId, userId and media")
    return NewPost(
        _id(body.get("postId"), "postId"),
        _id(body.get("userId"), "userId"),
        parse_media(body, prefixes),
    )


def _prefixes(request: Request) -> tuple[str, ...]:
    service: Service = request.app.state.service
    return service.backends.settings.media_url_prefixes


# --------------------------------------------------------------------------- rendering


def _insights_json(insights: Insights | None) -> dict[str, Any] | None:
    if insights is None:
        return None
    return {
        "status": insights.status,
        "isSafe": insights.is_safe,
        "moderationConfidence": insights.moderation_confidence,
        "caption": insights.caption,
        "tags": None if insights.tags is None else list(insights.tags),
        "scenes": None if insights.scenes is None else list(insights.scenes),
        "imageEmbeddingLength": insights.embedding_length,
        "servicesCompleted": list(insights.services_completed),
        "correlationId": insights.correlation_id,
        "updatedAt": utc_timestamp(insights.updated_at),
    }


def _face_json(face: Face, suggestions: bool) -> dict[str, Any]:
    """`suggestions`: whether the caller may see who the face was matched to."""
    if not suggestions:
        face = attrs.evolve(
            face, suggested_user_id=None, suggestion_confidence=None, matched_username=None
        )
    return {
        "faceId": face.face_id,
        "bbox": None if face.bbox is None else list(face.bbox),
        "confidence": face.confidence,
        "status": face.status,
        "suggestedUserId": face.suggested_user_id,
        "suggestionConfidence": face.suggestion_confidence,
        "matchedUsername": face.matched_username,
        "updatedAt": utc_timestamp(face.updated_at),
    }


def _media_json(media: MediaRecord, caller: Caller, owner: int) -> dict[str, Any]:
    return {
        "mediaId": media.media_id,
        "mediaUrl": media.media_url,
        "position": media.position,
        "insights": _insights_json(media.insights),
        "faces": [_face_json(face, sees_suggestion(caller, owner, face)) for face in media.faces],
    }


def sees_suggestion(caller: Caller, owner: int, face: Face) -> bool:
    """Face suggestions name people: only the post's owner, the suggested user, moderators,
    admins and trusted callers see them."""
    if caller.moderates or caller.user_id == owner:
        return True
    return caller.user_id is not None and caller.user_id == face.suggested_user_id


def _post_insights_json(insights: PostInsights | None) -> dict[str, Any] | None:
    if insights is None:
        return None
    return {
        "mediaCount": insights.media_count,
        "allAiTags": list(insights.all_ai_tags),
        "allAiScenes": list(insights.all_ai_scenes),
        "aggregatedTags": list(insights.aggregated_tags),
        "aggregatedScenes": list(insights.aggregated_scenes),
        "totalFaces": insights.total_faces,
        "isSafe": insights.is_safe,
        "moderationConfidence": insights.moderation_confidence,
        "inferredEventType": insights.inferred_event_type,
        "combinedCaption": insights.combined_caption,
        "hasMultipleImages": insights.has_multiple_images,
        "correlationId": insights.correlation_id,
        "aggregatedAt": (
            None if insights.aggregated_at is None else utc_timestamp(insights.aggregated_at)
        ),
        "updatedAt": utc_timestamp(insights.updated_at),
    }


def post_json(post: PostRecord, views: int, caller: Caller) -> dict[str, Any]:
    return {
        "postId": post.post_id,
        "userId": post.user_id,
        "status": post.status,
        "views": views,
        "createdAt": utc_timestamp(post.created_at),
        "updatedAt": utc_timestamp(post.updated_at),
        "insights": _post_insights_json(post.insights),
        "media": [_media_json(media, caller, post.user_id) for media in post.media],
    }


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
    media = parse_media(_object(await read_json(request), "body", "media"), _prefixes(request))

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
    body = _object(await read_json(request), "body", "imageUrl (and username, department)")
    image_url = _url(body.get("imageUrl"), "imageUrl", _prefixes(request))
    try:
        picture = ProfilePicture(user_id, image_url, body.get("username"), body.get("department"))
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
