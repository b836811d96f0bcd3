"""Inbound codecs: decoders of the ML service's result streams, and encoders that write
entries exactly as the real ML service does (for the stand-in ML service and tests);
`decode_x(encode_x(m)) == m` holds for every message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, assert_never

from kaleido.messages.faces import parse_faces
from kaleido.messages.fields import (
    RawEntry,
    capped,
    entry_correlation_id,
    exact_floats,
    index_fields,
    label_list,
    optional,
    received_at,
    required,
    service_name,
    version_of,
)
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
    Invalid,
    Moderation,
    SceneRecognition,
    Tagging,
)
from kaleido.messages.names import FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM, INSIGHTS_STREAM
from kaleido.messages.values import (
    boolean,
    face_uid,
    ml_timestamp,
    non_negative_count,
    positive_id,
    probability,
    quote,
)

# --------------------------------------------------------------------------- inbound decoders


def _decode_moderation(entry: RawEntry) -> Moderation:
    return Moderation(
        is_safe=required(entry, "isSafe", boolean),
        confidence=optional(entry, "moderationConfidence", probability, None),
    )


def _decode_tagging(entry: RawEntry) -> Tagging:
    return Tagging(tags=required(entry, "tags", label_list))


def _decode_scenes(entry: RawEntry) -> SceneRecognition:
    return SceneRecognition(scenes=required(entry, "scenes", label_list))


def _decode_caption(entry: RawEntry) -> ImageCaptioning:
    caption = capped(MAX_CAPTION_CHARS, "a caption")
    return ImageCaptioning(caption=required(entry, "caption", caption))


def _decode_image_embedding(entry: RawEntry, dim: int = IMAGE_EMBEDDING_DIM) -> ImageEmbedding:
    return ImageEmbedding(embedding=required(entry, "imageEmbedding", exact_floats(dim)))


_PAYLOAD_DECODERS: Final[Mapping[str, Callable[[RawEntry], InsightPayload]]] = MappingProxyType(
    {
        Moderation.SERVICE: _decode_moderation,
        Tagging.SERVICE: _decode_tagging,
        SceneRecognition.SERVICE: _decode_scenes,
        ImageCaptioning.SERVICE: _decode_caption,
        ImageEmbedding.SERVICE: _decode_image_embedding,
    }
)


def decode_insight(
    fields: Fields, *, embedding_dim: int = IMAGE_EMBEDDING_DIM
) -> InsightResult | IgnoredEntry:
    """Decode an ``ml-insights-results`` entry (an image embedding has exactly
    `embedding_dim` floats).

    An unknown ``service`` gives an :class:`IgnoredEntry` (its other fields are not checked);
    anything missing, malformed or over a cap raises :class:`DecodeError`.
    """
    entry = index_fields(fields)
    service = required(entry, "service", service_name)
    decode_payload = _PAYLOAD_DECODERS.get(service)
    if decode_payload is None:
        return IgnoredEntry(reason=f"unknown service {quote(service)}", service=service)
    if service == ImageEmbedding.SERVICE:
        payload: InsightPayload = _decode_image_embedding(entry, embedding_dim)
    else:
        payload = decode_payload(entry)
    return InsightResult(
        media_id=required(entry, "mediaId", positive_id),
        post_id=required(entry, "postId", positive_id),
        payload=payload,
        correlation_id=entry_correlation_id(entry),
        timestamp=received_at(entry),
        version=version_of(entry),
    )


def decode_face_detection(
    fields: Fields, *, embedding_dim: int = FACE_EMBEDDING_DIM
) -> FaceDetectionResult:
    """Decode a ``face-detection-results`` entry (at most MAX_FACES faces, each embedding
    exactly `embedding_dim` floats, or none when the provider gives none); raises
    :class:`DecodeError`."""
    entry = index_fields(fields)

    def faces(text: str) -> tuple[DetectedFace, ...]:
        found = parse_faces(text)
        for index, face in enumerate(found):
            if face.embedding and len(face.embedding) != embedding_dim:
                raise Invalid(
                    f"face {index} embedding: {len(face.embedding)} floats, expected exactly "
                    f"{embedding_dim}"
                )
        return found

    return FaceDetectionResult(
        media_id=required(entry, "mediaId", positive_id),
        post_id=required(entry, "postId", positive_id),
        faces_detected=required(entry, "facesDetected", non_negative_count),
        faces=required(entry, "faces", faces),
        correlation_id=entry_correlation_id(entry),
        timestamp=received_at(entry),
        version=version_of(entry),
    )


def decode_face_recognition(fields: Fields) -> FaceRecognitionResult:
    """Decode a ``face-recognition-results`` entry; raises :class:`DecodeError`."""
    entry = index_fields(fields)
    return FaceRecognitionResult(
        media_id=required(entry, "mediaId", positive_id),
        post_id=required(entry, "postId", positive_id),
        face_id=required(entry, "faceId", face_uid),
        suggested_user_id=required(entry, "suggestedUserId", positive_id),
        confidence=required(entry, "confidenceScore", probability),
        matched_username=optional(
            entry, "matchedUsername", capped(MAX_USERNAME_CHARS, "a username"), None
        ),
        correlation_id=entry_correlation_id(entry),
        timestamp=received_at(entry),
        version=version_of(entry),
    )


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
