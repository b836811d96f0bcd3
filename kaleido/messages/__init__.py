"""Stream messages and their wire codecs (pure, no I/O); this package re-exports them all.

A stream entry is a flat field → value map. redis-py hands values over as ``bytes`` (or ``str``
with ``decode_responses=True``); both are accepted. Every inbound decoder either returns a typed,
fully validated message or raises :class:`DecodeError`, which names the offending field: the
consumer sends such an entry to ``{stream}:dlq``. No decoder raises anything else, whatever the
input. Unknown extra fields are ignored, whatever their size.

The ``encode_insight`` / ``encode_face_detection`` / ``encode_face_recognition`` encoders write
entries exactly as the real ML service does; they exist for the stand-in ML service and tests,
and ``decode_x(encode_x(m)) == m`` holds for every message.
"""

from __future__ import annotations

from kaleido.messages.fields import decode_text_fields
from kaleido.messages.inbound import (
    decode_face_detection,
    decode_face_recognition,
    decode_inbound,
    decode_insight,
    encode_face_detection,
    encode_face_recognition,
    encode_insight,
)
from kaleido.messages.limits import (
    EMBEDDING_DIM,
    MAX_CAPTION_CHARS,
    MAX_ENTRY_BYTES,
    MAX_FACES,
    MAX_FIELD_BYTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_USERNAME_CHARS,
)
from kaleido.messages.model import (
    INSIGHT_SERVICES,
    DecodeError,
    DetectedFace,
    FaceDetectionResult,
    FaceRecognitionResult,
    Fields,
    IgnoredEntry,
    ImageCaptioning,
    ImageEmbedding,
    InboundMessage,
    InsightPayload,
    InsightResult,
    Moderation,
    PostMediaEvent,
    ProfilePictureEvent,
    SceneRecognition,
    Tagging,
)
from kaleido.messages.names import (
    CONSUMER_GROUP,
    CONSUMER_NAMES,
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INBOUND_STREAMS,
    INSIGHTS_STREAM,
    OUTBOUND_STREAMS,
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_PICTURE_STREAM,
    dlq_stream,
)
from kaleido.messages.outbound import (
    decode_post_media,
    decode_profile_picture,
    encode_post_media,
    encode_profile_picture,
)
from kaleido.messages.values import utc_timestamp

__all__ = [
    "CONSUMER_GROUP",
    "CONSUMER_NAMES",
    "EMBEDDING_DIM",
    "FACE_DETECTION_STREAM",
    "FACE_RECOGNITION_STREAM",
    "INBOUND_STREAMS",
    "INSIGHTS_STREAM",
    "INSIGHT_SERVICES",
    "MAX_CAPTION_CHARS",
    "MAX_ENTRY_BYTES",
    "MAX_FACES",
    "MAX_FIELD_BYTES",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_USERNAME_CHARS",
    "OUTBOUND_STREAMS",
    "POST_IMAGE_STREAM",
    "POST_UPDATE_STREAM",
    "PROFILE_PICTURE_STREAM",
    "DecodeError",
    "DetectedFace",
    "FaceDetectionResult",
    "FaceRecognitionResult",
    "Fields",
    "IgnoredEntry",
    "ImageCaptioning",
    "ImageEmbedding",
    "InboundMessage",
    "InsightPayload",
    "InsightResult",
    "Moderation",
    "PostMediaEvent",
    "ProfilePictureEvent",
    "SceneRecognition",
    "Tagging",
    "decode_face_detection",
    "decode_face_recognition",
    "decode_inbound",
    "decode_insight",
    "decode_post_media",
    "decode_profile_picture",
    "decode_text_fields",
    "dlq_stream",
    "encode_face_detection",
    "encode_face_recognition",
    "encode_insight",
    "encode_post_media",
    "encode_profile_picture",
    "utc_timestamp",
]
