"""Stream names, the consumer group and its consumer names (docs/CONTRACT.md sections 2, 2b)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

INSIGHTS_STREAM: Final = "ml-insights-results"
FACE_DETECTION_STREAM: Final = "face-detection-results"
FACE_RECOGNITION_STREAM: Final = "face-recognition-results"
POST_IMAGE_STREAM: Final = "post-image-processing"
POST_UPDATE_STREAM: Final = "post-update-processing"
PROFILE_PICTURE_STREAM: Final = "profile-picture-processing"
# The rest of the real pipeline (CONTRACT 2b).
PROFILE_FACE_STREAM: Final = "user-profile-face-embedding-results"
POST_INSIGHTS_STREAM: Final = "post-insights-enriched"
AGGREGATION_TRIGGER_STREAM: Final = "post-aggregation-trigger"
SEARCH_SYNC_STREAM: Final = "es-sync-queue"

INBOUND_STREAMS: Final = (
    INSIGHTS_STREAM,
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    PROFILE_FACE_STREAM,
    POST_INSIGHTS_STREAM,
)
OUTBOUND_STREAMS: Final = (
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_PICTURE_STREAM,
    AGGREGATION_TRIGGER_STREAM,
    SEARCH_SYNC_STREAM,
)

CONSUMER_GROUP: Final = "backend-group"

#: Inbound stream → consumer name (a process may append its instance name).
CONSUMER_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        INSIGHTS_STREAM: "media-ai-consumer",
        FACE_DETECTION_STREAM: "face-detection-consumer",
        FACE_RECOGNITION_STREAM: "face-recognition-consumer",
        # Kaleido's names for the streams the contract's table does not name.
        PROFILE_FACE_STREAM: "profile-face-consumer",
        POST_INSIGHTS_STREAM: "post-insights-consumer",
    }
)


def dlq_stream(stream: str) -> str:
    """The dead-letter stream of ``stream``."""
    return f"{stream}:dlq"
