"""`Kaleido.posts`: posts, their media and profile pictures, as an embedding program stores them.

Every value is checked as the HTTP routes check it (ids, the media list, the media URL rules and
KALEIDO_MEDIA_URL_PREFIXES); a bad one raises ValueError naming it (`media[1].mediaUrl: ...`)
and nothing is stored. A change and its announcements to the ML service commit together
(kaleido.outbox), as for the routes.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from kaleido.media_urls import check_media_url
from kaleido.posts import MediaItem, NewPost, PostRecord, Stored, check_media
from kaleido.profiles import ProfilePicture
from kaleido.service import Service
from kaleido.views.model import check_id

# A media item: a MediaItem, or (media_id, media_url).
Media = MediaItem | tuple[int, str]


@attrs.frozen
class Posts:
    """Store posts and profile pictures; each is announced to the ML service."""

    _service: Service

    async def create(self, post_id: int, user_id: int, media: Iterable[Media]) -> Stored:
        """Store a new post with its media list and announce each media for analysis. Raises
        ValueError (a bad value), PostExists, MediaTaken or a backend error."""
        post = NewPost(check_id(post_id, "postId"), check_id(user_id, "userId"), self._media(media))
        return await self._service.posts.create(post)

    async def replace_media(self, post_id: int, media: Iterable[Media]) -> Stored:
        """Replace the post's media list (new media are analysed, every item re-announced).
        Raises ValueError, PostNotFound, MediaTaken or a backend error."""
        checked = self._media(media)
        return await self._service.posts.replace_media(check_id(post_id, "postId"), checked)

    async def set_profile_picture(
        self,
        user_id: int,
        image_url: str,
        *,
        username: str | None = None,
        department: str | None = None,
    ) -> str:
        """Record the user's new profile picture and announce it for face enrolment; returns the
        request's id (the ML service's answer names it). Raises ValueError or a backend error."""
        picture = ProfilePicture(
            check_id(user_id, "userId"),
            check_media_url(image_url, "imageUrl", self._prefixes),
            username,
            department,
        )
        event = await self._service.profiles.change_picture(picture)
        return event.correlation_id

    async def read(self, post_id: int) -> PostRecord:
        """The stored post with its media and what the ML service found; raises PostNotFound."""
        return await self._service.posts.read(check_id(post_id, "postId"))

    @property
    def _prefixes(self) -> tuple[str, ...]:
        return self._service.backends.settings.media_url_prefixes

    def _media(self, media: Iterable[Media]) -> tuple[MediaItem, ...]:
        items = []
        for index, item in enumerate(media):
            media_id, url = (item.media_id, item.media_url) if isinstance(item, MediaItem) else item
            items.append(
                MediaItem(
                    check_id(media_id, f"media[{index}].mediaId"),
                    check_media_url(url, f"media[{index}].mediaUrl", self._prefixes),
                )
            )
        check_media(items)
        return tuple(items)
