"""Outbound codecs: the events Kaleido publishes to the ML service, and their decoders
(used by the stand-in ML service)."""

from __future__ import annotations

from datetime import datetime

from kaleido.messages.fields import index_fields, required
from kaleido.messages.model import Fields, Invalid, PostMediaEvent, ProfilePictureEvent
from kaleido.messages.values import iso_timestamp, positive_id, utc_timestamp


def encode_post_media(event: PostMediaEvent) -> dict[str, str]:
    """Fields for ``post-image-processing`` / ``post-update-processing``."""
    return {
        "postId": str(event.post_id),
        "mediaId": str(event.media_id),
        "mediaUrl": event.media_url,
        "imageUrl": event.media_url,
        "uploaderId": str(event.uploader_id),
        "timestamp": utc_timestamp(event.timestamp),
        "correlationId": event.correlation_id,
    }


def encode_profile_picture(event: ProfilePictureEvent) -> dict[str, str]:
    """Fields for ``profile-picture-processing``."""
    return {
        "userId": str(event.user_id),
        "imageUrl": event.image_url,
        "correlationId": event.correlation_id,
        "timestamp": utc_timestamp(event.timestamp),
    }


def _event_timestamp(text: str) -> datetime:
    parsed = iso_timestamp(text)
    if parsed is None:
        raise Invalid("empty")
    return parsed


def _non_empty(text: str) -> str:
    if not text:
        raise Invalid("empty")
    return text


def decode_post_media(fields: Fields) -> PostMediaEvent:
    """Decode a ``post-image-processing`` / ``post-update-processing`` entry (stand-in ML side)."""
    entry = index_fields(fields)
    return PostMediaEvent(
        post_id=required(entry, "postId", positive_id),
        media_id=required(entry, "mediaId", positive_id),
        media_url=required(entry, "mediaUrl", _non_empty),
        uploader_id=required(entry, "uploaderId", positive_id),
        correlation_id=required(entry, "correlationId", _non_empty),
        timestamp=required(entry, "timestamp", _event_timestamp),
    )


def decode_profile_picture(fields: Fields) -> ProfilePictureEvent:
    """Decode a ``profile-picture-processing`` entry (stand-in ML side)."""
    entry = index_fields(fields)
    return ProfilePictureEvent(
        user_id=required(entry, "userId", positive_id),
        image_url=required(entry, "imageUrl", _non_empty),
        correlation_id=required(entry, "correlationId", _non_empty),
        timestamp=required(entry, "timestamp", _event_timestamp),
    )
