"""What the stand-in ML service answers for a media item (pure): the five insight services and
one face detection, in the real service's wire format (the `kaleido.messages` encoders).

Answers are a function of the ids (seeded by mediaId) and of the users enrolled so far (a face
in a post may be one of theirs, which the matcher then recognises); the correlationId is
echoed. A small share of answers is deliberately malformed so that the dead-letter path has
something to show.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kaleido.demo.faces import face_id, seen_face, stranger_face
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    IMAGE_EMBEDDING_DIM,
    INSIGHTS_STREAM,
    DetectedFace,
    FaceDetectionResult,
    ImageCaptioning,
    ImageEmbedding,
    InsightPayload,
    InsightResult,
    Moderation,
    PostMediaEvent,
    SceneRecognition,
    Tagging,
    encode_face_detection,
    encode_insight,
)

# Share of media whose answers include one malformed entry (the DLQ path stays visible).
MALFORMED_RATE = 0.02
# Share of media the moderation calls unsafe (flags the post).
UNSAFE_RATE = 0.08
# Share of faces that belong to an enrolled user (when any is enrolled).
KNOWN_FACE_RATE = 0.5

_TAGS = (
    "cat", "dog", "beach", "food", "friends", "sunset", "city", "mountain", "car", "flower",
    "coffee", "book", "party", "snow", "bike", "art", "music", "sport", "baby", "selfie",
)  # fmt: skip
_SCENES = (
    "indoor", "outdoor", "beach", "street", "forest", "kitchen", "office", "stadium", "park",
    "restaurant",
)  # fmt: skip
_ADJECTIVES = ("bright", "quiet", "busy", "colourful", "blurry", "warm", "cold", "cheerful")


def _insight_payloads(rng: random.Random, image_dim: int) -> list[InsightPayload]:
    tags = tuple(rng.sample(_TAGS, rng.randint(2, 5)))
    scenes = tuple(rng.sample(_SCENES, rng.randint(1, 2)))
    caption = f"a {rng.choice(_ADJECTIVES)} photo of {tags[0]} in a {scenes[0]} scene"
    return [
        Moderation(is_safe=rng.random() >= UNSAFE_RATE, confidence=round(rng.uniform(0.7, 1), 4)),
        Tagging(tags),
        SceneRecognition(scenes),
        ImageCaptioning(caption),
        ImageEmbedding(tuple(round(rng.gauss(0, 0.05), 6) for _ in range(image_dim))),
    ]


def _faces(
    rng: random.Random, media_id: int, face_dim: int, enrolled: Sequence[int]
) -> tuple[DetectedFace, ...]:
    count = rng.choices((0, 1, 2, 3), weights=(4, 3, 2, 1))[0]
    faces = []
    for index in range(count):
        x0, y0, size = rng.randint(0, 800), rng.randint(0, 600), rng.randint(40, 240)
        known = enrolled and rng.random() < KNOWN_FACE_RATE
        embedding = (
            seen_face(rng.choice(enrolled), face_dim, rng)
            if known
            else stranger_face(face_dim, rng)
        )
        faces.append(
            DetectedFace(
                face_id=face_id(media_id, index),
                bbox=(x0, y0, x0 + size, y0 + size),
                embedding=embedding,
                confidence=round(rng.uniform(0.8, 1), 4),
            )
        )
    return tuple(faces)


def _malform(rng: random.Random, answers: list[tuple[str, dict[str, str]]]) -> None:
    """Spoil one answer in place, the way a buggy ML release might."""
    if rng.random() < 0.5:
        for stream, fields in answers:
            if stream == FACE_DETECTION_STREAM:
                fields["faces"] = '[{"faceId": "not json'
                return
    del answers[0][1]["mediaId"]


def answers(
    event: PostMediaEvent,
    *,
    image_dim: int = IMAGE_EMBEDDING_DIM,
    face_dim: int = FACE_EMBEDDING_DIM,
    enrolled: Sequence[int] = (),
    malformed_rate: float = MALFORMED_RATE,
    now: datetime | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """The inbound entries (stream name, fields) the ML service would write for `event`;
    `enrolled` lists the users (sorted) whose faces may appear in it."""
    now = now or datetime.now(UTC)
    rng = random.Random(event.media_id)
    common: dict[str, Any] = {
        "media_id": event.media_id,
        "post_id": event.post_id,
        "correlation_id": event.correlation_id,
        "timestamp": now,
        "version": "1",
    }
    out = [
        (INSIGHTS_STREAM, encode_insight(InsightResult(payload=payload, **common)))
        for payload in _insight_payloads(rng, image_dim)
    ]
    faces = _faces(rng, event.media_id, face_dim, enrolled)
    detection = FaceDetectionResult(faces_detected=len(faces), faces=faces, **common)
    out.append((FACE_DETECTION_STREAM, encode_face_detection(detection)))
    if spoils(event.media_id, malformed_rate):
        _malform(random.Random(f"malform-kind:{event.media_id}"), out)
    return out


def spoils(media_id: int, malformed_rate: float = MALFORMED_RATE) -> bool:
    """Whether the answers for `media_id` include a malformed entry. A generator of its own:
    the malformed share can change without changing the answers."""
    return random.Random(f"malformed:{media_id}").random() < malformed_rate
