"""`face-detection-results` and `face-recognition-results` → `media_detected_faces`.

A face's `correlation_id` and `post_id` come from detection when it has arrived (recognition
fills them only for a row it creates), so either arrival order ends in the same row. Rows are
keyed by media, post and face: an entry naming another post than the others for its media is a
row of its own, which the owner check refuses (see base's docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from kaleido.gateways import Transaction
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    FACE_RECOGNITION_STREAM,
    FaceDetectionResult,
    FaceRecognitionResult,
    Fields,
    decode_face_detection,
    decode_face_recognition,
)
from kaleido.streams.handlers.base import Packed, Stale, Statement, array_literal, execute, unpacked

# Status is left alone on conflict: a face already SUGGESTED (or CONFIRMED) stays so.
_UPSERT_DETECTED = """
INSERT INTO media_detected_faces AS f (
    media_id, face_uid, post_id, bbox, confidence_score, embedding, correlation_id, status,
    updated_at)
SELECT t.media_id, t.face_uid, t.post_id, t.bbox::integer[], t.confidence, {embedding},
       NULLIF(t.correlation_id, ''), 'UNIDENTIFIED', now()
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::float8[], $6::integer[],
            $7::integer[], $8::integer[], $9::text[])
     AS t(media_id, face_uid, post_id, bbox, confidence, embedding_first, embedding_last,
          embedding_length, correlation_id)
WHERE kaleido_media_of_post(t.media_id, t.post_id)
ON CONFLICT (media_id, face_uid) DO UPDATE SET
    post_id = EXCLUDED.post_id,
    bbox = EXCLUDED.bbox,
    confidence_score = EXCLUDED.confidence_score,
    embedding = EXCLUDED.embedding,
    correlation_id = EXCLUDED.correlation_id,
    updated_at = now()
""".format(embedding=unpacked("$10", "t.embedding_first", "t.embedding_last", "t.embedding_length"))

# A confirmed face keeps its status; the suggestion itself is still recorded.
_UPSERT_RECOGNIZED = """
INSERT INTO media_detected_faces AS f (
    media_id, face_uid, post_id, suggested_user_id, suggestion_confidence, matched_username,
    correlation_id, status, updated_at)
SELECT t.media_id, t.face_uid, t.post_id, t.user_id, t.confidence, t.username,
       NULLIF(t.correlation_id, ''), 'SUGGESTED', now()
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[], $6::text[],
            $7::text[])
     AS t(media_id, face_uid, post_id, user_id, confidence, username, correlation_id)
WHERE kaleido_media_of_post(t.media_id, t.post_id)
ON CONFLICT (media_id, face_uid) DO UPDATE SET
    suggested_user_id = EXCLUDED.suggested_user_id,
    suggestion_confidence = EXCLUDED.suggestion_confidence,
    matched_username = EXCLUDED.matched_username,
    status = CASE WHEN f.status = 'CONFIRMED' THEN f.status ELSE 'SUGGESTED' END,
    updated_at = now()
"""


@attrs.frozen
class FaceDetectionHandler:
    """`face-detection-results` → one `media_detected_faces` row per face."""

    stream: str = FACE_DETECTION_STREAM
    embedding_dim: int = FACE_EMBEDDING_DIM

    def decode(self, fields: Fields) -> FaceDetectionResult:
        return decode_face_detection(fields, embedding_dim=self.embedding_dim)

    async def apply(
        self, tx: Transaction, messages: Sequence[tuple[str, FaceDetectionResult]]
    ) -> Stale:
        return await execute(tx, self.statements(messages))

    def statements(self, messages: Sequence[tuple[str, FaceDetectionResult]]) -> list[Statement]:
        # (media, post, face) → the latest detection of that face in the batch.
        latest = {
            (result.media_id, result.post_id, face.face_id): (result, face)
            for _, result in messages
            for face in result.faces
        }
        if not latest:
            return []  # entries with no faces are recorded (processed) and change nothing
        rows = list(latest.values())
        embeddings = Packed.of([f.embedding for _, f in rows])
        args = (
            [r.media_id for r, _ in rows],
            [f.face_id for _, f in rows],
            [r.post_id for r, _ in rows],
            [array_literal(f.bbox) for _, f in rows],
            [f.confidence for _, f in rows],
            embeddings.first,
            embeddings.last,
            embeddings.lengths,
            [r.correlation_id for r, _ in rows],
            embeddings.rows,
        )
        return [(_UPSERT_DETECTED, args)]


@attrs.frozen
class FaceRecognitionHandler:
    """`face-recognition-results` → the suggestion on the `(media_id, face_uid)` row."""

    stream: str = FACE_RECOGNITION_STREAM

    def decode(self, fields: Fields) -> FaceRecognitionResult:
        return decode_face_recognition(fields)

    async def apply(
        self, tx: Transaction, messages: Sequence[tuple[str, FaceRecognitionResult]]
    ) -> Stale:
        return await execute(tx, self.statements(messages))

    def statements(self, messages: Sequence[tuple[str, FaceRecognitionResult]]) -> list[Statement]:
        # The latest suggestion wins; the correlation id is the first entry's, since only a
        # recognition that creates the row sets it (as one by one).
        latest: dict[tuple[int, int, str], FaceRecognitionResult] = {}
        first_id: dict[tuple[int, int, str], str] = {}
        for _, r in messages:
            key = (r.media_id, r.post_id, r.face_id)
            latest[key] = r
            first_id.setdefault(key, r.correlation_id)
        rows = list(latest.items())
        args = (
            [r.media_id for _, r in rows],
            [r.face_id for _, r in rows],
            [r.post_id for _, r in rows],
            [r.suggested_user_id for _, r in rows],
            [r.confidence for _, r in rows],
            [r.matched_username for _, r in rows],
            [first_id[key] for key, _ in rows],
        )
        return [(_UPSERT_RECOGNIZED, args)]
