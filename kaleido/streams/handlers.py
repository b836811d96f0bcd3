"""One handler per inbound stream: how to decode an entry and how to apply a batch of them.

`statements` gives one set-based statement per kind of effect per batch (rows passed as
`unnest` arrays), not one per entry; the consumer runs them inside its transaction (`apply`),
or joined with its `processed_messages` insert into one statement. Entries of one batch that
touch the same row are merged in Python first, in stream order, with the same rules the SQL
applies to the stored row, so a batch has the effect of its entries applied one by one
(an upsert cannot touch one row twice in a statement anyway).

Decisions where the contract is silent:
- Moderation is sticky towards "unsafe": once a media item is `UNSAFE` (is_safe false), a later
  safe verdict is recorded in `services_completed` but changes neither `is_safe`,
  `moderation_confidence` nor the status, and the post stays `FLAGGED`. Clearing a flag is a
  human decision, not the ML service's.
- Any result sets the media status to `COMPLETED` unless it is `UNSAFE`.
- A face's `correlation_id` and `post_id` come from detection when it has arrived (recognition
  fills them only for a row it creates), so either arrival order ends in the same row.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs

from kaleido.flagging import FLAG_POSTS_OF_MEDIA
from kaleido.gateways import Transaction
from kaleido.messages import (
    EMBEDDING_DIM,
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INSIGHTS_STREAM,
    FaceDetectionResult,
    FaceRecognitionResult,
    Fields,
    IgnoredEntry,
    ImageCaptioning,
    ImageEmbedding,
    InsightResult,
    Moderation,
    SceneRecognition,
    Tagging,
    decode_face_detection,
    decode_face_recognition,
    decode_insight,
)

M = TypeVar("M")


class Handler(Protocol[M]):
    """Decoding and applying for one inbound stream."""

    @property
    def stream(self) -> str:
        """The contract's stream name."""
        ...

    def decode(self, fields: Fields) -> M | IgnoredEntry:
        """The message, or IgnoredEntry; raises `DecodeError` for a bad entry."""
        ...

    async def apply(self, tx: Transaction, messages: Sequence[tuple[str, M]]) -> None:
        """Apply the effects of `messages` (entry id, message), in stream order."""
        ...


Statement = tuple[str, tuple[Any, ...]]


M_contra = TypeVar("M_contra", contravariant=True)


@runtime_checkable
class StatementHandler(Protocol[M_contra]):
    """A handler whose effects are statements the consumer may run as it sees fit: the
    consumer runs them with the batch's `processed_messages` insert as ONE statement (data-
    modifying CTEs), which is a transaction of its own (no BEGIN/COMMIT round trips)."""

    def statements(self, messages: Sequence[tuple[str, M_contra]]) -> list[Statement]:
        """The statements (SQL, arguments) that apply `messages`; they touch different rows
        (or tables), so their order does not matter."""
        ...


async def _execute(tx: Transaction, statements: list[Statement]) -> None:
    for sql, args in statements:
        await tx.execute(sql, *args)


def _array_literal(values: Sequence[float]) -> str:
    """A PostgreSQL array literal: ragged arrays per row cannot go through unnest otherwise."""
    return "{" + ",".join(map(repr, values)) + "}"


@attrs.define
class _Packed:
    """The float arrays of one batch (ragged, some NULL) as ONE 2-D real[] parameter.

    asyncpg checks every element of a 1-D list parameter for being a nested array (an ABC
    isinstance per float, several times the cost of encoding it), but of a 2-D one only the
    first row. So the arrays are cut into rows of `width` floats (the most common length, so
    a typical array is exactly one row; the last row of an array is padded with NULLs), and
    array i is rows `first[i]..last[i]` flattened and cut to `lengths[i]` (see `_unpacked`).
    """

    rows: list[list[float | None]] = attrs.Factory(list)
    first: list[int | None] = attrs.Factory(list)
    last: list[int | None] = attrs.Factory(list)
    lengths: list[int | None] = attrs.Factory(list)

    @classmethod
    def of(cls, arrays: Sequence[Sequence[float] | None]) -> _Packed:
        packed = cls()
        sizes = Counter(len(a) for a in arrays if a)
        width = sizes.most_common(1)[0][0] if sizes else 1
        rows = packed.rows
        for values in arrays:
            if not values:  # NULL stays NULL, and an empty array needs no rows
                packed.first.append(None)
                packed.last.append(None)
                packed.lengths.append(None if values is None else 0)
                continue
            packed.first.append(len(rows) + 1)  # PostgreSQL subscripts start at 1
            if len(values) == width:
                rows.append(list(values))
            else:
                for start in range(0, len(values), width):
                    row: list[float | None] = list(values[start : start + width])
                    row += [None] * (width - len(row))
                    rows.append(row)
            packed.last.append(len(rows))
            packed.lengths.append(len(values))
        return packed


def _unpacked(matrix: str, first: str, last: str, length: str) -> str:
    """SQL for one array of a `_Packed` (NULL stays NULL; a zero length gives '{}')."""
    return (
        f"CASE WHEN {length} IS NULL THEN NULL"
        f" WHEN {length} = 0 THEN '{{}}'::real[]"
        f" ELSE (ARRAY(SELECT unnest(({matrix}::real[])[{first}:{last}][:])))[1:{length}] END"
    )


# --------------------------------------------------------------------------- insights


@attrs.define
class _Insight:
    """What one batch says about one media item, merged in stream order."""

    media_id: int
    post_id: int
    services: list[str] = attrs.Factory(list)
    is_safe: bool | None = None
    confidence: float | None = None
    caption: str | None = None
    tags: tuple[str, ...] | None = None
    scenes: tuple[str, ...] | None = None
    embedding: tuple[float, ...] | None = None
    correlation_id: str = ""

    def merge(self, result: InsightResult) -> None:
        self.post_id = result.post_id
        if result.correlation_id:
            self.correlation_id = result.correlation_id
        if result.service not in self.services:
            self.services.append(result.service)
        match result.payload:
            case Moderation(is_safe=is_safe, confidence=confidence):
                if self.is_safe is not False:  # unsafe is sticky (module docstring)
                    self.is_safe, self.confidence = is_safe, confidence
            case Tagging(tags=tags):
                self.tags = tags
            case SceneRecognition(scenes=scenes):
                self.scenes = scenes
            case ImageCaptioning(caption=caption):
                self.caption = caption
            case ImageEmbedding(embedding=embedding):
                self.embedding = embedding


# A service's columns change only when the batch carries that service ('x' = ANY(new.services));
# `services_completed` keeps first-arrival order without duplicates.
_UPSERT_INSIGHTS = """
INSERT INTO media_ai_insights AS m (
    media_id, post_id, status, is_safe, moderation_confidence, caption, tags, scenes,
    image_embedding, services_completed, correlation_id, updated_at)
SELECT t.media_id, t.post_id,
       CASE WHEN t.is_safe IS FALSE THEN 'UNSAFE' ELSE 'COMPLETED' END,
       t.is_safe, t.confidence, t.caption,
       CASE WHEN t.tags IS NULL THEN NULL
            ELSE ARRAY(SELECT jsonb_array_elements_text(t.tags::jsonb)) END,
       CASE WHEN t.scenes IS NULL THEN NULL
            ELSE ARRAY(SELECT jsonb_array_elements_text(t.scenes::jsonb)) END,
       {embedding}, t.services::text[], NULLIF(t.correlation_id, ''), now()
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::boolean[], $5::float8[], $6::text[],
            $7::text[], $8::text[], $9::integer[], $10::integer[], $11::integer[], $12::text[])
     AS t(media_id, post_id, services, is_safe, confidence, caption, tags, scenes,
          embedding_first, embedding_last, embedding_length, correlation_id)
WHERE kaleido_media_of_post(t.media_id, t.post_id)
ON CONFLICT (media_id) DO UPDATE SET
    post_id = EXCLUDED.post_id,
    is_safe = CASE WHEN 'moderation' = ANY(EXCLUDED.services_completed) AND m.is_safe IS NOT FALSE
                   THEN EXCLUDED.is_safe ELSE m.is_safe END,
    moderation_confidence = CASE
        WHEN 'moderation' = ANY(EXCLUDED.services_completed) AND m.is_safe IS NOT FALSE
        THEN EXCLUDED.moderation_confidence ELSE m.moderation_confidence END,
    caption = CASE WHEN 'image_captioning' = ANY(EXCLUDED.services_completed)
                   THEN EXCLUDED.caption ELSE m.caption END,
    tags = CASE WHEN 'tagging' = ANY(EXCLUDED.services_completed)
                THEN EXCLUDED.tags ELSE m.tags END,
    scenes = CASE WHEN 'scene_recognition' = ANY(EXCLUDED.services_completed)
                  THEN EXCLUDED.scenes ELSE m.scenes END,
    image_embedding = CASE WHEN 'image_embedding' = ANY(EXCLUDED.services_completed)
                           THEN EXCLUDED.image_embedding ELSE m.image_embedding END,
    services_completed = ARRAY(
        SELECT s FROM unnest(m.services_completed || EXCLUDED.services_completed)
                      WITH ORDINALITY AS u(s, i)
        GROUP BY s ORDER BY min(i)),
    status = CASE WHEN m.status = 'UNSAFE' OR EXCLUDED.status = 'UNSAFE'
                  THEN 'UNSAFE' ELSE 'COMPLETED' END,
    correlation_id = COALESCE(EXCLUDED.correlation_id, m.correlation_id),
    updated_at = now()
""".format(
    embedding=_unpacked("$13", "t.embedding_first", "t.embedding_last", "t.embedding_length")
)


@attrs.frozen
class InsightsHandler:
    """`ml-insights-results` → `media_ai_insights` (and `posts.status` for unsafe media)."""

    stream: str = INSIGHTS_STREAM
    embedding_dim: int = EMBEDDING_DIM

    def decode(self, fields: Fields) -> InsightResult | IgnoredEntry:
        return decode_insight(fields, embedding_dim=self.embedding_dim)

    async def apply(self, tx: Transaction, messages: Sequence[tuple[str, InsightResult]]) -> None:
        await _execute(tx, self.statements(messages))

    def statements(self, messages: Sequence[tuple[str, InsightResult]]) -> list[Statement]:
        rows: dict[int, _Insight] = {}
        unsafe_media: set[int] = set()
        for _, result in messages:
            row = rows.get(result.media_id)
            if row is None:
                row = rows[result.media_id] = _Insight(result.media_id, result.post_id)
            row.merge(result)
            if isinstance(result.payload, Moderation) and not result.payload.is_safe:
                unsafe_media.add(result.media_id)
        items = list(rows.values())
        embeddings = _Packed.of([r.embedding for r in items])
        args = (
            [r.media_id for r in items],
            [r.post_id for r in items],
            ["{" + ",".join(r.services) + "}" for r in items],  # service names are identifiers
            [r.is_safe for r in items],
            [r.confidence for r in items],
            [r.caption for r in items],
            [None if r.tags is None else json.dumps(r.tags) for r in items],
            [None if r.scenes is None else json.dumps(r.scenes) for r in items],
            embeddings.first,
            embeddings.last,
            embeddings.lengths,
            [r.correlation_id for r in items],
            embeddings.rows,
        )
        statements: list[Statement] = [(_UPSERT_INSIGHTS, args)]
        if unsafe_media:
            statements.append((FLAG_POSTS_OF_MEDIA, (sorted(unsafe_media),)))
        return statements


# --------------------------------------------------------------------------- faces

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
""".format(
    embedding=_unpacked("$10", "t.embedding_first", "t.embedding_last", "t.embedding_length")
)

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
    embedding_dim: int = EMBEDDING_DIM

    def decode(self, fields: Fields) -> FaceDetectionResult:
        return decode_face_detection(fields, embedding_dim=self.embedding_dim)

    async def apply(
        self, tx: Transaction, messages: Sequence[tuple[str, FaceDetectionResult]]
    ) -> None:
        await _execute(tx, self.statements(messages))

    def statements(self, messages: Sequence[tuple[str, FaceDetectionResult]]) -> list[Statement]:
        # (media, face) → the latest detection of that face in the batch.
        latest = {
            (result.media_id, face.face_id): (result, face)
            for _, result in messages
            for face in result.faces
        }
        if not latest:
            return []  # entries with no faces are recorded (processed) and change nothing
        rows = list(latest.values())
        embeddings = _Packed.of([f.embedding for _, f in rows])
        args = (
            [r.media_id for r, _ in rows],
            [f.face_id for _, f in rows],
            [r.post_id for r, _ in rows],
            [_array_literal(f.bbox) for _, f in rows],
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
    ) -> None:
        await _execute(tx, self.statements(messages))

    def statements(self, messages: Sequence[tuple[str, FaceRecognitionResult]]) -> list[Statement]:
        rows = list({(r.media_id, r.face_id): r for _, r in messages}.values())
        args = (
            [r.media_id for r in rows],
            [r.face_id for r in rows],
            [r.post_id for r in rows],
            [r.suggested_user_id for r in rows],
            [r.confidence for r in rows],
            [r.matched_username for r in rows],
            [r.correlation_id for r in rows],
        )
        return [(_UPSERT_RECOGNIZED, args)]
