"""`Posts`: store a post (or its new media list) and announce it, in one transaction.

What a change announces is written to the outbox in the change's own transaction
(kaleido.outbox): a caller gets its answer once both are committed, and the relay publishes
them right after (`announced` kicks it). A crash or a Redis outage delays the announcement; it
never loses it, and never leaves a stored post unannounced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from kaleido.gateways import PostgresGateway
from kaleido.logs import get_logger
from kaleido.messages import POST_IMAGE_STREAM, POST_UPDATE_STREAM, PostMediaEvent
from kaleido.outbox import announce_post_media, outbound_correlation_id
from kaleido.posts.model import (
    MediaItem,
    NewPost,
    PostNotFound,
    PostRecord,
    Stored,
    check_media,
)
from kaleido.posts.sql import insert_post, read_post, replace_media

log = get_logger("kaleido.posts")


def _nothing() -> None:
    pass


@attrs.define
class Posts:
    """What routes, the demo traffic and embedding programs call to store and read posts."""

    postgres: PostgresGateway
    # Called after each commit that announced something (the relay's kick).
    announced: Callable[[], None] = _nothing

    async def create(self, post: NewPost) -> Stored:
        """Store the post and announce `post-image-processing` per media item.

        Raises ValueError (bad media list), PostExists, MediaTaken or the backend error;
        nothing is stored or announced then.
        """
        check_media(post.media)
        events = _events(post.post_id, post.user_id, post.media)
        async with self.postgres.transaction() as tx:
            await insert_post(tx, post)
            announced = await announce_post_media(tx, POST_IMAGE_STREAM, events)
        self.announced()
        log.info("post.stored", post_id=post.post_id, media=len(post.media), announced=announced)
        return Stored(post.post_id, len(post.media), announced)

    async def replace_media(
        self,
        post_id: int,
        media: Sequence[MediaItem],
        may_edit: Callable[[int], None] | None = None,
    ) -> Stored:
        """Replace the post's media list; announce `post-image-processing` for each media new
        to the post (the ML service analyses those) and `post-update-processing` for every
        item of the new list. `may_edit(owner)` may refuse it by raising.

        Raises ValueError, PostNotFound, MediaTaken or the backend error; nothing changes then.
        """
        check_media(media)
        async with self.postgres.transaction() as tx:
            change = await replace_media(tx, post_id, media, may_edit)
            new = [item for item in media if item.media_id in change.added]
            events = _events(post_id, change.user_id, media)
            fresh = [e for e in events if e.media_id in change.added]
            announced = await announce_post_media(tx, POST_IMAGE_STREAM, fresh)
            announced += await announce_post_media(tx, POST_UPDATE_STREAM, events)
        self.announced()
        log.info(
            "post.media_replaced",
            post_id=post_id,
            media=len(media),
            added=len(new),
            removed=change.removed,
            announced=announced,
        )
        return Stored(post_id, len(media), announced, change.removed, len(new))

    async def read(self, post_id: int) -> PostRecord:
        """The stored post; raises PostNotFound."""
        record = await read_post(self.postgres, post_id)
        if record is None:
            raise PostNotFound(f"post {post_id} does not exist")
        return record


def _events(post_id: int, user_id: int, media: Sequence[MediaItem]) -> list[PostMediaEvent]:
    correlation_id = outbound_correlation_id()
    return [
        PostMediaEvent(post_id, item.media_id, item.media_url, user_id, correlation_id)
        for item in media
    ]
