"""`Publisher`: the outbound streams to the ML service (docs/CONTRACT.md section 2).

Every publish is one round trip (`XADD key MAXLEN ~ maxlen * field value ...` per event, in one
pipeline), through `kaleido.streams.outbound.OutboundStreams`. A failed publish raises a
`kaleido.errors.BackendError`; it is never swallowed, so the caller can tell its own caller
that the ML service was not told.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

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
from kaleido.streams.outbound import OutboundEntry, OutboundStreams

log = get_logger("kaleido.publisher")

POST_MEDIA_STREAMS = frozenset({POST_IMAGE_STREAM, POST_UPDATE_STREAM})


def outbound_correlation_id() -> str:
    """The correlation id an outbound event carries: the caller's (request, entry) or a new one."""
    return current_correlation_id() or new_correlation_id()


@attrs.define
class Publisher:
    """Writes outbound events; `maxlen` is the approximate length each stream is trimmed to."""

    streams: OutboundStreams
    keys: KeyLayout
    maxlen: int

    def _entry(self, stream: str, fields: dict[str, str]) -> OutboundEntry:
        return OutboundEntry(self.keys.stream(stream), fields, self.maxlen)

    async def publish_post_media(self, stream: str, events: Sequence[PostMediaEvent]) -> list[str]:
        """Publish `events` on `stream` (post-image- or post-update-processing) in one round
        trip; return their entry ids. Raises the backend error if any of them failed."""
        if stream not in POST_MEDIA_STREAMS:
            raise ValueError(f"{stream!r} is not a post media stream")
        ids = await self.streams.append(
            [self._entry(stream, encode_post_media(event)) for event in events]
        )
        log.info("publish.post_media", stream=stream, events=len(ids))
        return ids

    async def publish_profile_picture(self, event: ProfilePictureEvent) -> str:
        """Publish one profile picture change; return its entry id. Raises on failure."""
        (entry_id,) = await self.streams.append(
            [self._entry(PROFILE_PICTURE_STREAM, encode_profile_picture(event))]
        )
        log.info("publish.profile_picture", user_id=event.user_id)
        return entry_id
