"""The typed messages of every stream, and `DecodeError` (pure data, no codec).

Inbound results (`InsightResult` with its payloads, `FaceDetectionResult`,
`FaceRecognitionResult`, `ProfileFaceResult`, `PostInsightsResult`, `IgnoredEntry`) are what the
decoders return; outbound events (`PostMediaEvent`, `ProfilePictureEvent`, `AggregationTrigger`,
`SearchSyncEvent`) validate themselves when built: an outbound correlation id must survive the
ML service's decoding (`kaleido.messages.peer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar, Final, TypeAlias

import attrs

from kaleido.errors import KaleidoError
from kaleido.messages.limits import INT64_MAX
from kaleido.messages.peer import usable_correlation_id


class DecodeError(KaleidoError, ValueError):
    """A stream entry cannot be decoded: a field is missing, malformed or oversized.

    ``str(error)`` reads ``"<field>: <reason>"``, e.g.
    ``mediaId: expected a positive 64-bit integer, got 'abc'``.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


# --------------------------------------------------------------------------- messages

Fields: TypeAlias = Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]
"""A raw stream entry as redis-py returns it."""


@attrs.frozen
class Moderation:
    """``service=moderation``. ``confidence`` is None when the entry carries none."""

    SERVICE: ClassVar[str] = "moderation"
    is_safe: bool
    confidence: float | None = None


@attrs.frozen
class Tagging:
    """``service=tagging``."""

    SERVICE: ClassVar[str] = "tagging"
    tags: tuple[str, ...]


@attrs.frozen
class SceneRecognition:
    """``service=scene_recognition``."""

    SERVICE: ClassVar[str] = "scene_recognition"
    scenes: tuple[str, ...]


@attrs.frozen
class ImageCaptioning:
    """``service=image_captioning``."""

    SERVICE: ClassVar[str] = "image_captioning"
    caption: str


@attrs.frozen
class ImageEmbedding:
    """``service=image_embedding`` (1408 floats from the real service; not enforced)."""

    SERVICE: ClassVar[str] = "image_embedding"
    embedding: tuple[float, ...]


InsightPayload: TypeAlias = (
    Moderation | Tagging | SceneRecognition | ImageCaptioning | ImageEmbedding
)

INSIGHT_SERVICES: Final[frozenset[str]] = frozenset(
    cls.SERVICE for cls in (Moderation, Tagging, SceneRecognition, ImageCaptioning, ImageEmbedding)
)


@attrs.frozen
class InsightResult:
    """One ``ml-insights-results`` entry: the result of one ML service for one media item.

    ``payload`` holds only that service's fields; ``match`` on its class to merge it.
    """

    media_id: int
    post_id: int
    payload: InsightPayload
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None

    @property
    def service(self) -> str:
        """The wire name of the service, e.g. ``"moderation"``."""
        return self.payload.SERVICE


@attrs.frozen
class IgnoredEntry:
    """An entry that is well-formed enough to acknowledge but carries nothing for us."""

    reason: str
    service: str = ""


@attrs.frozen
class DetectedFace:
    """One face of a ``face-detection-results`` entry.

    ``face_id`` is the ML ``faceId``, a canonical lowercase UUID string. ``bbox`` is
    ``(x0, y0, x1, y1)`` as sent; its ordering is not checked. ``embedding`` may be empty or
    all zeros.
    """

    face_id: str
    bbox: tuple[int, int, int, int]
    embedding: tuple[float, ...]
    confidence: float


@attrs.frozen
class FaceDetectionResult:
    """One ``face-detection-results`` entry.

    ``faces`` is authoritative; ``faces_detected`` is the count as the ML service reported it
    and may disagree with ``len(faces)`` (not an error).
    """

    media_id: int
    post_id: int
    faces_detected: int
    faces: tuple[DetectedFace, ...]
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None


@attrs.frozen
class FaceRecognitionResult:
    """One ``face-recognition-results`` entry: a suggested identity for a detected face."""

    media_id: int
    post_id: int
    face_id: str
    suggested_user_id: int
    confidence: float
    matched_username: str | None = None
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None


@attrs.frozen
class ProfileFaceResult:
    """One ``user-profile-face-embedding-results`` entry: the face of a user's profile picture.

    An all-zero ``embedding`` means the ML service's provider found no usable face.
    """

    user_id: int
    embedding: tuple[float, ...]
    correlation_id: str = ""

    @property
    def usable(self) -> bool:
        """Whether the embedding can identify anyone (it is not all zeros)."""
        return any(self.embedding)


@attrs.frozen
class PostInsightsResult:
    """One ``post-insights-enriched`` entry: the ML aggregator's post-level insights."""

    post_id: int
    media_count: int
    all_ai_tags: tuple[str, ...]
    all_ai_scenes: tuple[str, ...]
    aggregated_tags: tuple[str, ...]
    aggregated_scenes: tuple[str, ...]
    total_faces: int
    is_safe: bool
    moderation_confidence: float
    inferred_event_type: str
    combined_caption: str
    has_multiple_images: bool
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None


InboundMessage: TypeAlias = (
    InsightResult
    | IgnoredEntry
    | FaceDetectionResult
    | FaceRecognitionResult
    | ProfileFaceResult
    | PostInsightsResult
)


def _check_id(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT64_MAX:
        raise ValueError(f"{attribute.name}: expected a positive 64-bit integer, got {value!r}")


def _check_text(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name}: expected a non-empty string, got {value!r}")


def _check_correlation(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if usable_correlation_id(value) != value:
        raise ValueError(
            f"{attribute.name}: {value!r:.80} is no correlation id the ML service keeps as text"
        )


def _check_aware(_: object, attribute: attrs.Attribute[datetime], value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{attribute.name}: expected a timezone-aware datetime, got {value!r}")


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen
class PostMediaEvent:
    """Outbound on ``post-image-processing`` and ``post-update-processing``."""

    post_id: int = attrs.field(validator=_check_id)
    media_id: int = attrs.field(validator=_check_id)
    media_url: str = attrs.field(validator=_check_text)
    uploader_id: int = attrs.field(validator=_check_id)
    correlation_id: str = attrs.field(validator=_check_correlation)
    timestamp: datetime = attrs.field(factory=_now, validator=_check_aware)


@attrs.frozen
class ProfilePictureEvent:
    """Outbound on ``profile-picture-processing``."""

    user_id: int = attrs.field(validator=_check_id)
    image_url: str = attrs.field(validator=_check_text)
    correlation_id: str = attrs.field(validator=_check_correlation)
    timestamp: datetime = attrs.field(factory=_now, validator=_check_aware)


@attrs.frozen
class MediaServiceResult:
    """One element of a trigger's ``mediaInsights``: one service's result for one media item.

    ``service`` is an insight service's name, or ``"face"`` with ``faces_detected``; only the
    fields of that service are set.
    """

    media_id: int = attrs.field(validator=_check_id)
    service: str = attrs.field(validator=_check_text)
    is_safe: bool | None = None
    moderation_confidence: float | None = None
    tags: tuple[str, ...] | None = None
    scenes: tuple[str, ...] | None = None
    caption: str | None = None
    faces_detected: int | None = None


@attrs.frozen
class AggregationTrigger:
    """Outbound on ``post-aggregation-trigger``: every current media of the post has the
    insights the aggregator needs, and ``media_insights`` carries them."""

    post_id: int = attrs.field(validator=_check_id)
    media_ids: tuple[int, ...]
    media_insights: tuple[MediaServiceResult, ...]
    correlation_id: str = attrs.field(validator=_check_correlation)
    timestamp: datetime = attrs.field(factory=_now, validator=_check_aware)

    @property
    def total_media(self) -> int:
        return len(self.media_ids)


SEARCH_OPERATIONS: Final = frozenset({"index", "delete"})


def _check_operation(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in SEARCH_OPERATIONS:
        raise ValueError(f"{attribute.name}: expected index or delete, got {value!r}")


@attrs.frozen
class SearchSyncEvent:
    """Outbound on ``es-sync-queue``: the ML service's search sync (re)indexes or deletes one
    document of a read model."""

    index_type: str = attrs.field(validator=_check_text)
    operation: str = attrs.field(validator=_check_operation)
    document_id: str = attrs.field(validator=_check_text)
    correlation_id: str = attrs.field(validator=_check_correlation)
    timestamp: datetime = attrs.field(factory=_now, validator=_check_aware)
