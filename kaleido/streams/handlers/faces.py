"""`face-detection-results` and `face-recognition-results` → `media_detected_faces`.

A face's `correlation_id` and `post_id` come from its newest detection once one has arrived
(until then from its newest recognition), its box and embedding from the newest detection, its
suggestion from the newest recognition: each value with the stream position that set it, so
any arrival order ends in the same row. Rows are keyed by media, post and face: an entry naming
another post than the others for its media is a row of its own, which the owner check refuses
(see base's docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from kaleido.gateways import Transaction
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    FACE_RECOGNITION_STREAM,
    DetectedFace,
    FaceDetectionResult,
    FaceRecognitionResult,
    Fields,
    decode_face_detection,
    decode_face_recognition,
)
from kaleido.streams.handlers.base import (
    Packed,
    Stale,
    Statement,
    array_literal,
    execute,
    position,
    positions,
    unpacked,
)

# Status is left alone on conflict: a face already SUGGESTED (or CONFIRMED) stays so.
_UPSERT_DETECTED = """
INSERT INTO media_detected_faces AS f (
    media_id, face_uid, post_id, bbox, confidence_score, embedding, correlation_id, status,
    updated_at, detected_entry)
SELECT t.media_id, t.face_uid, t.post_id, t.bbox::integer[], t.confidence, {embedding},
       NULLIF(t.correlation_id, ''), 'UNIDENTIFIED', now(), t.entry
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::float8[], $6::integer[],
            $7::integer[], $8::integer[], $9::text[], $11::numeric[])
     AS t(media_id, face_uid, post_id, bbox, confidence, embedding_first, embedding_last,
          embedding_length, correlation_id, entry)
WHERE kaleido_media_of_post(t.media_id, t.post_id)
ON CONFLICT (media_id, face_uid) DO UPDATE SET
    post_id = CASE WHEN kaleido_newer(f.detected_entry, EXCLUDED.detected_entry)
                   THEN EXCLUDED.post_id ELSE f.post_id END,
    bbox = CASE WHEN kaleido_newer(f.detected_entry, EXCLUDED.detected_entry)
                THEN EXCLUDED.bbox ELSE f.bbox END,
    confidence_score = CASE WHEN kaleido_newer(f.detected_entry, EXCLUDED.detected_entry)
                            THEN EXCLUDED.confidence_score ELSE f.confidence_score END,
    embedding = CASE WHEN kaleido_newer(f.detected_entry, EXCLUDED.detected_entry)
                     THEN EXCLUDED.embedding ELSE f.embedding END,
    correlation_id = CASE WHEN kaleido_newer(f.detected_entry, EXCLUDED.detected_entry)
                          THEN EXCLUDED.correlation_id ELSE f.correlation_id END,
    detected_entry = GREATEST(f.detected_entry, EXCLUDED.detected_entry),
    updated_at = now()
""".format(embedding=unpacked("$10", "t.embedding_first", "t.embedding_last", "t.embedding_length"))

# A confirmed face keeps its status; the suggestion itself is still recorded.
_UPSERT_RECOGNIZED = """
INSERT INTO media_detected_faces AS f (
    media_id, face_uid, post_id, suggested_user_id, suggestion_confidence, matched_username,
    correlation_id, status, updated_at, recognized_entry)
SELECT t.media_id, t.face_uid, t.post_id, t.user_id, t.confidence, t.username,
       NULLIF(t.correlation_id, ''), 'SUGGESTED', now(), t.entry
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[], $6::text[],
            $7::text[], $8::numeric[])
     AS t(media_id, face_uid, post_id, user_id, confidence, username, correlation_id, entry)
WHERE kaleido_media_of_post(t.media_id, t.post_id)
ON CONFLICT (media_id, face_uid) DO UPDATE SET
    suggested_user_id = CASE WHEN kaleido_newer(f.recognized_entry, EXCLUDED.recognized_entry)
                             THEN EXCLUDED.suggested_user_id ELSE f.suggested_user_id END,
    suggestion_confidence = CASE
        WHEN kaleido_newer(f.recognized_entry, EXCLUDED.recognized_entry)
        THEN EXCLUDED.suggestion_confidence ELSE f.suggestion_confidence END,
    matched_username = CASE WHEN kaleido_newer(f.recognized_entry, EXCLUDED.recognized_entry)
                            THEN EXCLUDED.matched_username ELSE f.matched_username END,
    -- Detection's, once it has arrived.
    post_id = CASE WHEN f.detected_entry IS NULL
                        AND kaleido_newer(f.recognized_entry, EXCLUDED.recognized_entry)
                   THEN EXCLUDED.post_id ELSE f.post_id END,
    correlation_id = CASE WHEN f.detected_entry IS NULL
                               AND kaleido_newer(f.recognized_entry, EXCLUDED.recognized_entry)
                          THEN EXCLUDED.correlation_id ELSE f.correlation_id END,
    recognized_entry = GREATEST(f.recognized_entry, EXCLUDED.recognized_entry),
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
        # (media, post, face) → the newest detection of that face in the batch.
        latest: dict[tuple[int, int, str], tuple[int, FaceDetectionResult, DetectedFace]] = {}
        for entry_id, result in messages:
            at = position(entry_id)
            for face in result.faces:
                key = (result.media_id, result.post_id, face.face_id)
                if key not in latest or at > latest[key][0]:
                    latest[key] = (at, result, face)
        if not latest:
            return []  # entries with no faces are recorded (processed) and change nothing
        rows = list(latest.values())
        embeddings = Packed.of([f.embedding for _, _, f in rows])
        args = (
            [r.media_id for _, r, _ in rows],
            [f.face_id for _, _, f in rows],
            [r.post_id for _, r, _ in rows],
            [array_literal(f.bbox) for _, _, f in rows],
            [f.confidence for _, _, f in rows],
            embeddings.first,
            embeddings.last,
            embeddings.lengths,
            [r.correlation_id for _, r, _ in rows],
            embeddings.rows,
            positions([at for at, _, _ in rows]),
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
        # (media, post, face) → the newest recognition of that face in the batch.
        latest: dict[tuple[int, int, str], tuple[int, FaceRecognitionResult]] = {}
        for entry_id, r in messages:
            at, key = position(entry_id), (r.media_id, r.post_id, r.face_id)
            if key not in latest or at > latest[key][0]:
                latest[key] = (at, r)
        rows = list(latest.values())
        args = (
            [r.media_id for _, r in rows],
            [r.face_id for _, r in rows],
            [r.post_id for _, r in rows],
            [r.suggested_user_id for _, r in rows],
            [r.confidence for _, r in rows],
            [r.matched_username for _, r in rows],
            [r.correlation_id for _, r in rows],
            positions([at for at, _ in rows]),
        )
        return [(_UPSERT_RECOGNIZED, args)]
