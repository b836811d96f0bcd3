"""Posts and their media: stored in PostgreSQL first, then announced to the ML service.

The SQL functions here own the `posts` / `post_media` rows (CONTRACT.md section 3); `Posts` is
the facade the HTTP routes and the demo traffic share: store, then publish one event per media
item. Store-then-publish means a publish failure leaves the post stored and raises
`PublishFailed`, which says so; it is never reported as a success.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import attrs

from kaleido.errors import BackendError, KaleidoError
from kaleido.flagging import flag_posts_of_unsafe_media
from kaleido.gateways import PostgresGateway, Transaction
from kaleido.messages import POST_IMAGE_STREAM, POST_UPDATE_STREAM, PostMediaEvent
from kaleido.publisher import Publisher, outbound_correlation_id

# A post carries a handful of images; 50 bounds one request's fan-out to the ML service.
MAX_MEDIA = 50
# Longer URLs are refused by common browsers and CDNs; the ML service must fetch this one.
MAX_URL_CHARS = 2048


class PostExists(KaleidoError):
    """A post with this id is already stored."""


class PostNotFound(KaleidoError):
    """No post with this id is stored."""


class MediaTaken(KaleidoError):
    """A mediaId already belongs to another post."""


class PublishFailed(BackendError):
    """The post is stored but its events could not be published; the message says both."""


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
class Published:
    """The outcome of a store-then-publish call."""

    post_id: int
    media: int
    entry_ids: tuple[str, ...]
    removed: int = 0

    @property
    def published(self) -> int:
        return len(self.entry_ids)


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
class PostRecord:
    """A stored post as `GET /v1/posts/{id}` shows it (without views: they are not all here)."""

    post_id: int
    user_id: int
    status: str
    created_at: datetime
    updated_at: datetime
    media: tuple[MediaRecord, ...]


# --------------------------------------------------------------------------- validation


def check_media_url(value: object, name: str, prefixes: Sequence[str] = ()) -> str:
    """Return `value` if the ML service may fetch it; otherwise raise ValueError naming `name`
    and the rule it breaks.

    The ML service fetches these URLs from inside the network, so a URL must not be able to
    point there (SSRF): https only, no user:password@, no IP literal, no `localhost` and no
    single-label host (`http://redis/`), at most MAX_URL_CHARS, no whitespace or control
    characters. With `prefixes` (KALEIDO_MEDIA_URL_PREFIXES, e.g. a CDN bucket) it must also
    start with one of them.
    """
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected an https URL, got {value!r:.80}")
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"{name}: {len(value)} characters, limit {MAX_URL_CHARS}")
    # Whitespace, control characters or lone surrogates would reach the fetch (or PostgreSQL).
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF
           for c in value):  # fmt: skip
        raise ValueError(f"{name}: whitespace or control characters in the URL")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - urllib validates the port lazily
    except ValueError:
        raise ValueError(f"{name}: not a valid URL: {value!r:.80}") from None
    if parts.scheme != "https":
        raise ValueError(f"{name}: expected an https URL, got {value!r:.80}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name}: a URL with user:password@ is not accepted")
    if not host:
        raise ValueError(f"{name}: the URL has no host")
    host = host.rstrip(".")
    if _is_ip_literal(host):
        raise ValueError(f"{name}: an IP address as host is not accepted ({host})")
    if host == "localhost" or host.endswith(".localhost") or "." not in host:
        raise ValueError(f"{name}: {host!r} is not a public host name")
    if prefixes and not any(value.startswith(prefix) for prefix in prefixes):
        raise ValueError(f"{name}: must start with one of {', '.join(prefixes)}")
    return value


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # Forms browsers and fetchers also read as IPv4: 0x7f.1, 017700000001, 127.1.
        labels = host.split(".")
        return all(re.fullmatch(r"(0x[0-9a-f]+|[0-9]+)", label) for label in labels)
    return True


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


# --------------------------------------------------------------------------- SQL

_INSERT_POST = """
INSERT INTO posts (post_id, user_id) VALUES ($1, $2)
ON CONFLICT (post_id) DO NOTHING RETURNING post_id
"""


# Positions follow the list order, from 0. A media id owned by another post is not touched
# (the WHERE of DO UPDATE) and so missing from RETURNING: the caller reports it.
_UPSERT_MEDIA = """
INSERT INTO post_media (media_id, post_id, media_url, position)
SELECT m.media_id, $1, m.url, (m.pos - 1)::int
FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS m(media_id, url, pos)
ON CONFLICT (media_id) DO UPDATE
    SET media_url = excluded.media_url, position = excluded.position, updated_at = now()
    WHERE post_media.post_id = excluded.post_id
RETURNING media_id
"""

_OWNERS = "SELECT media_id, post_id FROM post_media WHERE media_id = ANY($1::bigint[])"

_SELECT_POST = """
SELECT post_id, user_id, status, created_at, updated_at FROM posts WHERE post_id = $1
"""

_SELECT_MEDIA = """
SELECT m.media_id, m.media_url, m.position, i.media_id IS NOT NULL AS has_insights,
       i.status, i.is_safe, i.moderation_confidence, i.caption, i.tags, i.scenes,
       cardinality(i.image_embedding) AS embedding_length, i.services_completed,
       i.correlation_id, i.updated_at
FROM post_media m LEFT JOIN media_ai_insights i ON i.media_id = m.media_id
WHERE m.post_id = $1 ORDER BY m.position, m.media_id
"""

_SELECT_FACES = """
SELECT media_id, face_uid, bbox, confidence_score, status, suggested_user_id,
       suggestion_confidence, matched_username, updated_at
FROM media_detected_faces WHERE media_id = ANY($1::bigint[]) ORDER BY media_id, id
"""


async def _upsert_media(tx: Transaction, post_id: int, media: Sequence[MediaItem]) -> None:
    ids = [item.media_id for item in media]
    written = {
        row["media_id"]
        for row in await tx.fetch(_UPSERT_MEDIA, post_id, ids, [m.media_url for m in media])
    }
    if len(written) == len(ids):
        return
    owners = {row["media_id"]: row["post_id"] for row in await tx.fetch(_OWNERS, ids)}
    index, media_id = next((i, m) for i, m in enumerate(ids) if m not in written)
    raise MediaTaken(
        f"media[{index}].mediaId: {media_id} already belongs to post {owners.get(media_id, '?')}"
    )


async def insert_post(postgres: PostgresGateway, post: NewPost) -> None:
    """Store the post and its media in one transaction (a trigger folds in its view backlog:
    migration 0005).

    Raises PostExists, MediaTaken (nothing stored then) or the backend error.
    """
    async with postgres.transaction() as tx:
        if await tx.fetchval(_INSERT_POST, post.post_id, post.user_id) is None:
            raise PostExists(f"postId: post {post.post_id} already exists")
        await _upsert_media(tx, post.post_id, post.media)
        # An unsafe result that arrived before the post (or the media) was stored flags it.
        await flag_posts_of_unsafe_media(tx, [m.media_id for m in post.media])


async def replace_media(
    postgres: PostgresGateway,
    post_id: int,
    media: Sequence[MediaItem],
    may_edit: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Make `media` the post's media list (PUT semantics): delete the items not in it, upsert
    the rest with their positions. Returns (the post's user id, how many items were removed).
    `may_edit(owner)` raises to refuse the change (in the transaction, before anything changed).

    Raises PostNotFound, MediaTaken (nothing changed then) or the backend error.
    """
    ids = [m.media_id for m in media]
    async with postgres.transaction() as tx:
        # FOR UPDATE serialises concurrent replacements of one post.
        user_id = await tx.fetchval(
            "SELECT user_id FROM posts WHERE post_id = $1 FOR UPDATE", post_id
        )
        if user_id is None:
            raise PostNotFound(f"post {post_id} does not exist")
        if may_edit is not None:
            may_edit(int(user_id))
        removed = await tx.fetch(
            "DELETE FROM post_media WHERE post_id = $1 AND NOT media_id = ANY($2::bigint[]) "
            "RETURNING media_id",
            post_id,
            ids,
        )
        await _upsert_media(tx, post_id, media)
        await tx.execute("UPDATE posts SET updated_at = now() WHERE post_id = $1", post_id)
        await flag_posts_of_unsafe_media(tx, ids)
    return int(user_id), len(removed)


def _tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _insights(row: Any) -> Insights | None:
    if not row["has_insights"]:
        return None
    return Insights(
        status=row["status"],
        is_safe=row["is_safe"],
        moderation_confidence=row["moderation_confidence"],
        caption=row["caption"],
        tags=_tuple(row["tags"]),
        scenes=_tuple(row["scenes"]),
        embedding_length=row["embedding_length"],
        services_completed=tuple(row["services_completed"] or ()),
        correlation_id=row["correlation_id"],
        updated_at=row["updated_at"],
    )


def _face(row: Any) -> Face:
    return Face(
        face_id=row["face_uid"],
        bbox=_tuple(row["bbox"]),
        confidence=row["confidence_score"],
        status=row["status"],
        suggested_user_id=row["suggested_user_id"],
        suggestion_confidence=row["suggestion_confidence"],
        matched_username=row["matched_username"],
        updated_at=row["updated_at"],
    )


async def read_post(postgres: PostgresGateway, post_id: int) -> PostRecord | None:
    """The post with its media, insights and faces (one snapshot), or None."""
    async with postgres.transaction(isolation="repeatable_read") as tx:
        post = await tx.fetchrow(_SELECT_POST, post_id)
        if post is None:
            return None
        media_rows = await tx.fetch(_SELECT_MEDIA, post_id)
        face_rows = await tx.fetch(_SELECT_FACES, [row["media_id"] for row in media_rows])
    faces: dict[int, list[Face]] = {}
    for row in face_rows:
        faces.setdefault(row["media_id"], []).append(_face(row))
    media = tuple(
        MediaRecord(
            media_id=row["media_id"],
            media_url=row["media_url"],
            position=row["position"],
            insights=_insights(row),
            faces=tuple(faces.get(row["media_id"], ())),
        )
        for row in media_rows
    )
    return PostRecord(
        post_id=post["post_id"],
        user_id=post["user_id"],
        status=post["status"],
        created_at=post["created_at"],
        updated_at=post["updated_at"],
        media=media,
    )


# --------------------------------------------------------------------------- facade


@attrs.define
class Posts:
    """Store in PostgreSQL, then publish to the ML service: what routes and demo traffic call."""

    postgres: PostgresGateway
    publisher: Publisher

    async def create(self, post: NewPost) -> Published:
        """Store the post, then publish `post-image-processing` per media item.

        Raises ValueError (bad media list), PostExists, MediaTaken, the backend error when
        storing failed, or PublishFailed when the post is stored but publishing failed.
        """
        check_media(post.media)
        await insert_post(self.postgres, post)
        ids = await self._publish(POST_IMAGE_STREAM, post.post_id, post.user_id, post.media)
        return Published(post.post_id, len(post.media), ids)

    async def replace_media(
        self,
        post_id: int,
        media: Sequence[MediaItem],
        may_edit: Callable[[int], None] | None = None,
    ) -> Published:
        """Replace the post's media list, then publish `post-update-processing` per item;
        `may_edit(owner)` may refuse it by raising.

        Raises ValueError, PostNotFound, MediaTaken, the backend error, or PublishFailed.
        """
        check_media(media)
        user_id, removed = await replace_media(self.postgres, post_id, media, may_edit)
        ids = await self._publish(POST_UPDATE_STREAM, post_id, user_id, media)
        return Published(post_id, len(media), ids, removed)

    async def read(self, post_id: int) -> PostRecord:
        """The stored post; raises PostNotFound."""
        record = await read_post(self.postgres, post_id)
        if record is None:
            raise PostNotFound(f"post {post_id} does not exist")
        return record

    async def _publish(
        self, stream: str, post_id: int, user_id: int, media: Sequence[MediaItem]
    ) -> tuple[str, ...]:
        correlation_id = outbound_correlation_id()
        events = [
            PostMediaEvent(post_id, item.media_id, item.media_url, user_id, correlation_id)
            for item in media
        ]
        try:
            return tuple(await self.publisher.publish_post_media(stream, events))
        except BackendError as exc:
            raise PublishFailed(
                f"post {post_id} and its {len(media)} media are stored, but publishing to "
                f"{stream} failed, so the ML service was not told: {exc}"
            ) from exc
