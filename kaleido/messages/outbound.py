"""Outbound codecs: the events Kaleido publishes to the ML service, and their decoders
(used by the stand-in ML service)."""

from __future__ import annotations

from kaleido.messages.converter import converter, register
from kaleido.messages.entry import REQUIRED, index_fields, structure_entry, text_field
from kaleido.messages.model import Fields, PostMediaEvent, ProfilePictureEvent
from kaleido.messages.values import event_timestamp, non_empty, positive_id, utc_timestamp


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


# Every field is required: the timestamp too, though the class makes one when built in code.
register(
    PostMediaEvent,
    {"timestamp": REQUIRED},
    post_id=text_field("postId", positive_id),
    media_id=text_field("mediaId", positive_id),
    media_url=text_field("mediaUrl", non_empty),
    uploader_id=text_field("uploaderId", positive_id),
    correlation_id=text_field("correlationId", non_empty),
    timestamp=text_field("timestamp", event_timestamp),
)
register(
    ProfilePictureEvent,
    {"timestamp": REQUIRED},
    user_id=text_field("userId", positive_id),
    image_url=text_field("imageUrl", non_empty),
    correlation_id=text_field("correlationId", non_empty),
    timestamp=text_field("timestamp", event_timestamp),
)
converter.register_unstructure_hook(PostMediaEvent, encode_post_media)
converter.register_unstructure_hook(ProfilePictureEvent, encode_profile_picture)


def decode_post_media(fields: Fields) -> PostMediaEvent:
    """Decode a ``post-image-processing`` / ``post-update-processing`` entry (stand-in ML side)."""
    return structure_entry(index_fields(fields), PostMediaEvent)


def decode_profile_picture(fields: Fields) -> ProfilePictureEvent:
    """Decode a ``profile-picture-processing`` entry (stand-in ML side)."""
    return structure_entry(index_fields(fields), ProfilePictureEvent)
