"""`ml-insights-results` → `media_ai_insights` (and `posts.status` for unsafe media).

Decisions where the contract is silent:
- Moderation is sticky towards "unsafe": once a media item is `UNSAFE` (is_safe false), a later
  safe verdict is recorded in `services_completed` but changes neither `is_safe`,
  `moderation_confidence` nor the status, and the post stays `FLAGGED`. Clearing a flag is a
  human decision, not the ML service's.
- Any result sets the media status to `COMPLETED` unless it is `UNSAFE`.

The read models and the post's aggregation trigger follow from the stored row (migration 0006's
triggers), in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from kaleido.flagging import FLAG_POSTS_OF_MEDIA
from kaleido.gateways import Transaction
from kaleido.messages import (
    IMAGE_EMBEDDING_DIM,
    INSIGHTS_STREAM,
    Fields,
    IgnoredEntry,
    ImageCaptioning,
    ImageEmbedding,
    InsightResult,
    Moderation,
    SceneRecognition,
    Tagging,
    decode_insight,
)
from kaleido.streams.handlers.base import Packed, Stale, Statement, execute, unpacked


@attrs.define
class _Insight:
    """What one batch says about one media item of one post, merged in stream order."""

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
""".format(embedding=unpacked("$13", "t.embedding_first", "t.embedding_last", "t.embedding_length"))


@attrs.frozen
class InsightsHandler:
    """`ml-insights-results` → `media_ai_insights` (and `posts.status` for unsafe media)."""

    stream: str = INSIGHTS_STREAM
    embedding_dim: int = IMAGE_EMBEDDING_DIM

    def decode(self, fields: Fields) -> InsightResult | IgnoredEntry:
        return decode_insight(fields, embedding_dim=self.embedding_dim)

    async def apply(self, tx: Transaction, messages: Sequence[tuple[str, InsightResult]]) -> Stale:
        return await execute(tx, self.statements(messages))

    def statements(self, messages: Sequence[tuple[str, InsightResult]]) -> list[Statement]:
        # Keyed by media AND post: an entry naming another post than the others for its media
        # is a row of its own, which the owner check refuses (see base's docstring).
        rows: dict[tuple[int, int], _Insight] = {}
        unsafe_media: set[int] = set()
        for _, result in messages:
            key = (result.media_id, result.post_id)
            row = rows.get(key)
            if row is None:
                row = rows[key] = _Insight(result.media_id, result.post_id)
            row.merge(result)
            if isinstance(result.payload, Moderation) and not result.payload.is_safe:
                unsafe_media.add(result.media_id)
        items = list(rows.values())
        embeddings = Packed.of([r.embedding for r in items])
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
