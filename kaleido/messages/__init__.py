"""Stream messages and their wire codecs (pure, no I/O); this package re-exports them all.

A stream entry is a flat field → value map. redis-py hands values over as ``bytes`` (or
``str`` with ``decode_responses=True``); both are accepted. Every inbound decoder structures the
entry on the one converter (`kaleido.messages.converter`, docs/codecs.md) and either returns a
typed, fully validated message or raises :class:`DecodeError`, which names the offending field:
the consumer sends such an entry to ``{stream}:dlq``. No decoder raises anything else, whatever the
input. Unknown extra fields are ignored, whatever their size.

The ``encode_insight`` / ``encode_face_detection`` / ``encode_face_recognition`` encoders write
entries exactly as the real ML service does; they exist for the stand-in ML service and tests,
and ``decode_x(encode_x(m)) == m`` holds for every message.
"""

from __future__ import annotations

from kaleido.messages.aggregation import (
    decode_aggregation_trigger,
    decode_post_insights,
    encode_aggregation_trigger,
    encode_post_insights,
)
from kaleido.messages.enrolment import decode_profile_face, encode_profile_face
from kaleido.messages.entry import decode_text_fields
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
    FACE_EMBEDDING_DIM,
    IMAGE_EMBEDDING_DIM,
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
    AggregationTrigger,
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
    MediaServiceResult,
    Moderation,
    PostInsightsResult,
    PostMediaEvent,
    ProfileFaceResult,
    ProfilePictureEvent,
    SceneRecognition,
    SearchSyncEvent,
    Tagging,
)
from kaleido.messages.names import (
    AGGREGATION_TRIGGER_STREAM,
    CONSUMER_GROUP,
    CONSUMER_NAMES,
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INBOUND_STREAMS,
    INSIGHTS_STREAM,
    OUTBOUND_STREAMS,
    POST_IMAGE_STREAM,
    POST_INSIGHTS_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_FACE_STREAM,
    PROFILE_PICTURE_STREAM,
    SEARCH_SYNC_STREAM,
    dlq_stream,
)
from kaleido.messages.outbound import (
    decode_post_media,
    decode_profile_picture,
    encode_post_media,
    encode_profile_picture,
)
from kaleido.messages.peer import keeps_type, peer_decode, peer_fields, usable_correlation_id
from kaleido.messages.search_sync import (
    INDEXES,
    decode_search_sync,
    encode_search_sync,
    known_face_id,
)
from kaleido.messages.values import utc_timestamp

__all__ = [
    "AGGREGATION_TRIGGER_STREAM",
    "CONSUMER_GROUP",
    "CONSUMER_NAMES",
    "FACE_DETECTION_STREAM",
    "FACE_EMBEDDING_DIM",
    "FACE_RECOGNITION_STREAM",
    "IMAGE_EMBEDDING_DIM",
    "INBOUND_STREAMS",
    "INDEXES",
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
    "POST_INSIGHTS_STREAM",
    "POST_UPDATE_STREAM",
    "PROFILE_FACE_STREAM",
    "PROFILE_PICTURE_STREAM",
    "SEARCH_SYNC_STREAM",
    "AggregationTrigger",
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
    "MediaServiceResult",
    "Moderation",
    "PostInsightsResult",
    "PostMediaEvent",
    "ProfileFaceResult",
    "ProfilePictureEvent",
    "SceneRecognition",
    "SearchSyncEvent",
    "Tagging",
    "decode_aggregation_trigger",
    "decode_face_detection",
    "decode_face_recognition",
    "decode_inbound",
    "decode_insight",
    "decode_post_insights",
    "decode_post_media",
    "decode_profile_face",
    "decode_profile_picture",
    "decode_search_sync",
    "decode_text_fields",
    "dlq_stream",
    "encode_aggregation_trigger",
    "encode_face_detection",
    "encode_face_recognition",
    "encode_insight",
    "encode_post_insights",
    "encode_post_media",
    "encode_profile_face",
    "encode_profile_picture",
    "encode_search_sync",
    "keeps_type",
    "known_face_id",
    "peer_decode",
    "peer_fields",
    "usable_correlation_id",
    "utc_timestamp",
]
