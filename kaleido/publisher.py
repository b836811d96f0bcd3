"""`Publisher`: the outbound streams to the ML service (docs/CONTRACT.md section 2).

Every publish is one round trip (`XADD key MAXLEN ~ maxlen * field value ...` per event, in one
pipeline). A failed publish raises a `kaleido.errors.BackendError`; it is never swallowed, so the
caller can tell its own caller that the ML service was not told.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from kaleido.gateways import RedisGateway
from kaleido.keys import KeyLayout
from kaleido.logs import current_correlation_id, get_logger, new_correlation_id
from kaleido.messages import (
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_PICTURE_STREAM,
    PostMediaEvent,
    ProfilePictureEvent,
    encode_post_media,
    encode_profile_picture,
)

log = get_logger("kaleido.publisher")

POST_MEDIA_STREAMS = frozenset({POST_IMAGE_STREAM, POST_UPDATE_STREAM})


def outbound_correlation_id() -> str:
    """The correlation id an outbound event carries: the caller's (request, entry) or a new one."""
    return current_correlation_id() or new_correlation_id()


def _entry_id(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


@attrs.define
class Publisher:
    """Writes outbound events; `maxlen` is the approximate length each stream is trimmed to."""

    redis: RedisGateway
    keys: KeyLayout
    maxlen: int

    def _xadd(self, stream: str, fields: dict[str, str]) -> list[str]:
        command = ["XADD", self.keys.stream(stream), "MAXLEN", "~", str(self.maxlen), "*"]
        for name, value in fields.items():
            command += [name, value]
        return command

    async def publish_post_media(self, stream: str, events: Sequence[PostMediaEvent]) -> list[str]:
        """Publish `events` on `stream` (post-image- or post-update-processing) in one round
        trip; return their entry ids. Raises the backend error if any of them failed."""
        if stream not in POST_MEDIA_STREAMS:
            raise ValueError(f"{stream!r} is not a post media stream")
        replies = await self.redis.pipeline(
            [self._xadd(stream, encode_post_media(event)) for event in events]
        )
        ids = [_entry_id(reply) for reply in replies]
        log.info("publish.post_media", stream=stream, events=len(ids))
        return ids

    async def publish_profile_picture(self, event: ProfilePictureEvent) -> str:
        """Publish one profile picture change; return its entry id. Raises on failure."""
        reply = await self.redis.execute(
            *self._xadd(PROFILE_PICTURE_STREAM, encode_profile_picture(event))
        )
        log.info("publish.profile_picture", user_id=event.user_id)
        return _entry_id(reply)
