"""`Posts`: store in PostgreSQL, then publish one event per media item to the ML service."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from kaleido.errors import BackendError
from kaleido.gateways import PostgresGateway
from kaleido.messages import POST_IMAGE_STREAM, POST_UPDATE_STREAM, PostMediaEvent
from kaleido.posts.model import (
    MediaItem,
    NewPost,
    PostNotFound,
    PostRecord,
    Published,
    PublishFailed,
    check_media,
)
from kaleido.posts.sql import insert_post, read_post, replace_media
from kaleido.publisher import Publisher, outbound_correlation_id


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
