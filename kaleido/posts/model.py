"""What a post is: its values (:class:`NewPost`, :class:`PostRecord`, ...), the errors storing one
raises, and the checks of its media list and URLs (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from kaleido.errors import KaleidoError
from kaleido.media_urls import check_media_url

# A post carries a handful of images; 50 bounds one request's fan-out to the ML service.
MAX_MEDIA = 50


class PostExists(KaleidoError):
    """A post with this id is already stored."""


class PostNotFound(KaleidoError):
    """No post with this id is stored."""


class MediaTaken(KaleidoError):
    """A mediaId already belongs to another post."""


# --------------------------------------------------------------------------- values


@attrs.frozen
class MediaItem:
    media_id: int
    media_url: str


@attrs.frozen
class NewPost:
    post_id: int
    user_id: int
    media: tuple[MediaItem, ...]


@attrs.frozen
class Stored:
    """What storing a post or its new media list did: committed, with `announced` outbound
    entries in the outbox (published to the ML service right after, kaleido.outbox)."""

    post_id: int
    media: int
    announced: int
    removed: int = 0  # media no longer in the list
    added: int = 0  # media new to the post


@attrs.frozen
class Insights:
    """A media's `media_ai_insights` row; the embedding is summarised by its length."""

    status: str
    is_safe: bool | None
    moderation_confidence: float | None
    caption: str | None
    tags: tuple[str, ...] | None
    scenes: tuple[str, ...] | None
    embedding_length: int | None
    services_completed: tuple[str, ...]
    correlation_id: str | None
    updated_at: datetime


@attrs.frozen
class Face:
    """A `media_detected_faces` row without its embedding."""

    face_id: str
    bbox: tuple[int, ...] | None
    confidence: float | None
    status: str
    suggested_user_id: int | None
    suggestion_confidence: float | None
    matched_username: str | None
    updated_at: datetime


@attrs.frozen
class MediaRecord:
    media_id: int
    media_url: str
    position: int
    insights: Insights | None
    faces: tuple[Face, ...]


@attrs.frozen
class PostInsights:
    """A post's `post_insights` row: the ML aggregator's answer to its latest trigger."""

    media_count: int
    all_ai_tags: tuple[str, ...]
    all_ai_scenes: tuple[str, ...]
    aggregated_tags: tuple[str, ...]
    aggregated_scenes: tuple[str, ...]
    total_faces: int
    is_safe: bool
    moderation_confidence: float
    inferred_event_type: str
    combined_caption: str
    has_multiple_images: bool
    correlation_id: str
    aggregated_at: datetime | None
    updated_at: datetime


@attrs.frozen
class PostRecord:
    """A stored post as `GET /v1/posts/{id}` shows it (without views: they are not all here)."""

    post_id: int
    user_id: int
    status: str
    created_at: datetime
    updated_at: datetime
    media: tuple[MediaRecord, ...]
    insights: PostInsights | None = None


# --------------------------------------------------------------------------- validation


def check_media(media: Sequence[MediaItem]) -> None:
    """A media list a post may hold: at most MAX_MEDIA items, unique ids, valid URLs.
    Raises ValueError naming the bad item (`media[1].mediaId: ...`)."""
    if len(media) > MAX_MEDIA:
        raise ValueError(f"media: {len(media)} items, limit {MAX_MEDIA}")
    seen: dict[int, int] = {}
    for index, item in enumerate(media):
        if item.media_id in seen:
            raise ValueError(
                f"media[{index}].mediaId: {item.media_id} repeats media[{seen[item.media_id]}]"
            )
        seen[item.media_id] = index
        check_media_url(item.media_url, f"media[{index}].mediaUrl")
