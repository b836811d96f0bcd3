"""Stream names, the consumer group and its consumer names (docs/CONTRACT.md section 2)."""

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

INBOUND_STREAMS: Final = (INSIGHTS_STREAM, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM)
OUTBOUND_STREAMS: Final = (POST_IMAGE_STREAM, POST_UPDATE_STREAM, PROFILE_PICTURE_STREAM)

CONSUMER_GROUP: Final = "backend-group"

#: Inbound stream → consumer name (a process may append its instance name).
CONSUMER_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        INSIGHTS_STREAM: "media-ai-consumer",
        FACE_DETECTION_STREAM: "face-detection-consumer",
        FACE_RECOGNITION_STREAM: "face-recognition-consumer",
    }
)


def dlq_stream(stream: str) -> str:
    """The dead-letter stream of ``stream``."""
    return f"{stream}:dlq"
