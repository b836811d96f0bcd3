"""The SQL that owns the `posts` / `post_media` rows (docs/CONTRACT.md section 3): insert a post,
replace its media list (inside the caller's transaction, which announces the change too), read
it back with its insights, faces and post-level insights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from kaleido.flagging import flag_posts_of_unsafe_media
from kaleido.gateways import PostgresGateway, Transaction
from kaleido.posts.model import (
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
)

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

_MEDIA_IDS = "SELECT media_id FROM post_media WHERE post_id = $1"

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

_SELECT_POST_INSIGHTS = "SELECT * FROM post_insights WHERE post_id = $1"

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


async def insert_post(tx: Transaction, post: NewPost) -> None:
    """Store the post and its media in the caller's transaction (a trigger folds in its view
    backlog: migration 0005; others project its read models: migration 0006).

    Raises PostExists, MediaTaken (the caller's transaction then rolls back) or the backend
    error.
    """
    if await tx.fetchval(_INSERT_POST, post.post_id, post.user_id) is None:
        raise PostExists(f"postId: post {post.post_id} already exists")
    await _upsert_media(tx, post.post_id, post.media)
    # An unsafe result that arrived before the post (or the media) was stored flags it.
    await flag_posts_of_unsafe_media(tx, [m.media_id for m in post.media])


@attrs.frozen
class MediaChange:
    """What replacing a post's media list did."""

    user_id: int  # the post's owner
    removed: int  # items no longer in the list
    added: frozenset[int]  # media ids new to the post


async def replace_media(
    tx: Transaction,
    post_id: int,
    media: Sequence[MediaItem],
    may_edit: Callable[[int], None] | None = None,
) -> MediaChange:
    """Make `media` the post's media list (PUT semantics), in the caller's transaction: delete
    the items not in it, upsert the rest with their positions; a new set of media ids is a new
    `media_version` (the post's aggregation is claimed anew for it). `may_edit(owner)` raises to
    refuse the change (before anything changed).

    Raises PostNotFound, MediaTaken (the caller's transaction then rolls back) or the backend
    error.
    """
    ids = [m.media_id for m in media]
    # FOR UPDATE serialises concurrent replacements of one post.
    user_id = await tx.fetchval("SELECT user_id FROM posts WHERE post_id = $1 FOR UPDATE", post_id)
    if user_id is None:
        raise PostNotFound(f"post {post_id} does not exist")
    if may_edit is not None:
        may_edit(int(user_id))
    before = {row["media_id"] for row in await tx.fetch(_MEDIA_IDS, post_id)}
    removed = await tx.fetch(
        "DELETE FROM post_media WHERE post_id = $1 AND NOT media_id = ANY($2::bigint[]) "
        "RETURNING media_id",
        post_id,
        ids,
    )
    await _upsert_media(tx, post_id, media)
    changed = before != set(ids)
    await tx.execute(
        "UPDATE posts SET updated_at = now(),"
        " media_version = media_version + CASE WHEN $2 THEN 1 ELSE 0 END WHERE post_id = $1",
        post_id,
        changed,
    )
    await flag_posts_of_unsafe_media(tx, ids)
    return MediaChange(int(user_id), len(removed), frozenset(ids) - before)


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


def _post_insights(row: Any) -> PostInsights | None:
    if row is None:
        return None
    return PostInsights(
        media_count=row["media_count"],
        all_ai_tags=tuple(row["all_ai_tags"]),
        all_ai_scenes=tuple(row["all_ai_scenes"]),
        aggregated_tags=tuple(row["aggregated_tags"]),
        aggregated_scenes=tuple(row["aggregated_scenes"]),
        total_faces=row["total_faces"],
        is_safe=row["is_safe"],
        moderation_confidence=row["moderation_confidence"],
        inferred_event_type=row["inferred_event_type"],
        combined_caption=row["combined_caption"],
        has_multiple_images=row["has_multiple_images"],
        correlation_id=row["correlation_id"],
        aggregated_at=row["aggregated_at"],
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
        insights = _post_insights(await tx.fetchrow(_SELECT_POST_INSIGHTS, post_id))
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
        insights=insights,
    )
