"""Inbound codecs: decoders of the ML service's result streams, and encoders that write
entries exactly as the real ML service does (for the stand-in ML service and tests);
`decode_x(encode_x(m)) == m` holds for every message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final, assert_never

import attrs

from kaleido.errors import Invalid
from kaleido.messages.converter import StructureFn, converter, register, structure_fn
from kaleido.messages.entry import index_fields, structure_entry, text_field
from kaleido.messages.faces import parse_faces
from kaleido.messages.limits import (
    FACE_EMBEDDING_DIM,
    IMAGE_EMBEDDING_DIM,
    MAX_CAPTION_CHARS,
    MAX_USERNAME_CHARS,
)
from kaleido.messages.model import (
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
    SceneRecognition,
    Tagging,
)
from kaleido.messages.names import FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM, INSIGHTS_STREAM
from kaleido.messages.values import (
    as_is,
    boolean,
    capped,
    echoed_correlation_id,
    exact_floats,
    face_uid,
    iso_timestamp,
    label_list,
    ml_timestamp,
    non_negative_count,
    positive_id,
    probability,
    quote,
    service_name,
)

# --------------------------------------------------------------------------- wire tables

# The fields every ML result carries after its own (CONTRACT 2): optional, each with its default.
_TRAILER: Final = {
    "correlation_id": text_field("correlationId", echoed_correlation_id),
    "timestamp": text_field("timestamp", iso_timestamp),
    "version": text_field("version", as_is),
}
_IDS: Final = {
    "media_id": text_field("mediaId", positive_id),
    "post_id": text_field("postId", positive_id),
}


@attrs.frozen
class _Service:
    """The ``service`` field alone: read first, it picks the payload class."""

    service: str


@attrs.frozen
class _InsightHead:
    """An insight entry's fields other than its payload's."""

    media_id: int
    post_id: int
    correlation_id: str = ""
    timestamp: datetime | None = None
    version: str | None = None


register(_Service, service=text_field("service", service_name))
register(_InsightHead, **_IDS, **_TRAILER)
register(
    Moderation,
    is_safe=text_field("isSafe", boolean),
    confidence=text_field("moderationConfidence", probability),
)
register(Tagging, tags=text_field("tags", label_list))
register(SceneRecognition, scenes=text_field("scenes", label_list))
register(ImageCaptioning, caption=text_field("caption", capped(MAX_CAPTION_CHARS, "a caption")))


@functools.cache
def _image_embedding(dim: int) -> StructureFn:
    return structure_fn(ImageEmbedding, embedding=text_field("imageEmbedding", exact_floats(dim)))


def _faces(dim: int) -> Callable[[str], tuple[DetectedFace, ...]]:
    def parse(text: str) -> tuple[DetectedFace, ...]:
        found = parse_faces(text)
        for index, face in enumerate(found):
            if face.embedding and len(face.embedding) != dim:
                raise Invalid(
                    f"face {index} embedding: {len(face.embedding)} floats, expected exactly {dim}"
                )
        return found

    return parse


@functools.cache
def _face_detection(dim: int) -> StructureFn:
    return structure_fn(
        FaceDetectionResult,
        **_IDS,
        faces_detected=text_field("facesDetected", non_negative_count),
        faces=text_field("faces", _faces(dim)),
        **_TRAILER,
    )


register(
    FaceRecognitionResult,
    **_IDS,
    face_id=text_field("faceId", face_uid),
    suggested_user_id=text_field("suggestedUserId", positive_id),
    confidence=text_field("confidenceScore", probability),
    matched_username=text_field("matchedUsername", capped(MAX_USERNAME_CHARS, "a username")),
    **_TRAILER,
)

_PAYLOADS: Final[Mapping[str, type[InsightPayload]]] = MappingProxyType(
    {cls.SERVICE: cls for cls in (Moderation, Tagging, SceneRecognition, ImageCaptioning)}
)

# --------------------------------------------------------------------------- inbound decoders


def decode_insight(
    fields: Fields, *, embedding_dim: int = IMAGE_EMBEDDING_DIM
) -> InsightResult | IgnoredEntry:
    """Decode an ``ml-insights-results`` entry (an image embedding has exactly
    `embedding_dim` floats).

    An unknown ``service`` gives an :class:`IgnoredEntry` (its other fields are not checked);
    anything missing, malformed or over a cap raises :class:`DecodeError`.
    """
    entry = index_fields(fields)
    service = structure_entry(entry, _Service).service
    payload: InsightPayload
    if service == ImageEmbedding.SERVICE:
        payload = structure_entry(entry, ImageEmbedding, _image_embedding(embedding_dim))
    elif (payload_class := _PAYLOADS.get(service)) is not None:
        payload = structure_entry(entry, payload_class)
    else:
        return IgnoredEntry(reason=f"unknown service {quote(service)}", service=service)
    head = structure_entry(entry, _InsightHead)
    return InsightResult(
        media_id=head.media_id,
        post_id=head.post_id,
        payload=payload,
        correlation_id=head.correlation_id,
        timestamp=head.timestamp,
        version=head.version,
    )


def decode_face_detection(
    fields: Fields, *, embedding_dim: int = FACE_EMBEDDING_DIM
) -> FaceDetectionResult:
    """Decode a ``face-detection-results`` entry (at most MAX_FACES faces, each embedding
    exactly `embedding_dim` floats, or none when the provider gives none); raises
    :class:`DecodeError`."""
    entry = index_fields(fields)
    return structure_entry(entry, FaceDetectionResult, _face_detection(embedding_dim))


def decode_face_recognition(fields: Fields) -> FaceRecognitionResult:
    """Decode a ``face-recognition-results`` entry; raises :class:`DecodeError`."""
    return structure_entry(index_fields(fields), FaceRecognitionResult)


_INBOUND_DECODERS: Final[Mapping[str, Callable[[Fields], InboundMessage]]] = MappingProxyType(
    {
        INSIGHTS_STREAM: decode_insight,
        FACE_DETECTION_STREAM: decode_face_detection,
        FACE_RECOGNITION_STREAM: decode_face_recognition,
    }
)


def decode_inbound(stream: str, fields: Fields) -> InboundMessage:
    """Decode an entry of any inbound stream; raises :class:`DecodeError`.

    An unknown ``stream`` is a programming error: KeyError.
    """
    return _INBOUND_DECODERS[stream](fields)


# --------------------------------------------------------------------------- ML-side encoders


def _ml_entry(
    result: InsightResult | FaceDetectionResult | FaceRecognitionResult, body: dict[str, str]
) -> dict[str, str]:
    """ids, ``body``, correlationId, timestamp, version: the order of the contract's examples."""
    fields = {"mediaId": str(result.media_id), "postId": str(result.post_id), **body}
    fields["correlationId"] = result.correlation_id
    if result.timestamp is not None:
        fields["timestamp"] = ml_timestamp(result.timestamp)
    if result.version is not None:
        fields["version"] = result.version
    return fields


def _payload_fields(payload: InsightPayload) -> dict[str, str]:
    match payload:
        case Moderation(is_safe=is_safe, confidence=confidence):
            fields = {"isSafe": "true" if is_safe else "false"}
            if confidence is not None:
                fields["moderationConfidence"] = str(confidence)
            return fields
        case Tagging(tags=tags):
            return {"tags": json.dumps(list(tags))}
        case SceneRecognition(scenes=scenes):
            return {"scenes": json.dumps(list(scenes))}
        case ImageCaptioning(caption=caption):
            return {"caption": caption}
        case ImageEmbedding(embedding=embedding):
            return {"imageEmbedding": json.dumps(list(embedding))}
        case _:
            assert_never(payload)


def encode_insight(result: InsightResult) -> dict[str, str]:
    """An ``ml-insights-results`` entry exactly as the real ML service writes it."""
    return _ml_entry(result, {"service": result.service, **_payload_fields(result.payload)})


def encode_face_detection(result: FaceDetectionResult) -> dict[str, str]:
    """A ``face-detection-results`` entry exactly as the real ML service writes it."""
    faces = [
        {
            "faceId": face.face_id,
            "bbox": list(face.bbox),
            "embedding": list(face.embedding),
            "confidence": face.confidence,
        }
        for face in result.faces
    ]
    head = {"facesDetected": str(result.faces_detected), "faces": json.dumps(faces)}
    return _ml_entry(result, head)


def encode_face_recognition(result: FaceRecognitionResult) -> dict[str, str]:
    """A ``face-recognition-results`` entry exactly as the real ML service writes it."""
    head = {"faceId": result.face_id, "suggestedUserId": str(result.suggested_user_id)}
    if result.matched_username is not None:
        head["matchedUsername"] = result.matched_username
    head["confidenceScore"] = str(result.confidence)
    return _ml_entry(result, head)


converter.register_unstructure_hook(InsightResult, encode_insight)
converter.register_unstructure_hook(FaceDetectionResult, encode_face_detection)
converter.register_unstructure_hook(FaceRecognitionResult, encode_face_recognition)
