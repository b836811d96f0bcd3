"""`ml-insights-results` → `media_ai_insights` (and `posts.status` for unsafe media).

Decisions where the contract is silent:
- Moderation is sticky towards "unsafe": once a media item is `UNSAFE` (is_safe false), a later
  safe verdict is recorded in `services_completed` but changes neither `is_safe`,
  `moderation_confidence` nor the status, and the post stays `FLAGGED`; of several unsafe
  verdicts the earliest is the one shown. Clearing a flag is a human decision, not the ML
  service's.
- Every other value is the newest entry's (by stream position), whatever order entries are
  applied in (see base's docstring).
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
from kaleido.streams.handlers.base import (
    Packed,
    Stale,
    Statement,
    execute,
    position,
    positions,
    unpacked,
)


@attrs.define
class _Insight:
    """What one batch says about one media item of one post, merged in stream order with the
    rules the SQL applies to the stored row (each value with the position that set it)."""

    media_id: int
    post_id: int
    post_entry: int = 0
    services: set[str] = attrs.Factory(set)
    is_safe: bool | None = None
    confidence: float | None = None
    moderation_entry: int | None = None
    caption: str | None = None
    caption_entry: int | None = None
    tags: tuple[str, ...] | None = None
    tagging_entry: int | None = None
    scenes: tuple[str, ...] | None = None
    scenes_entry: int | None = None
    embedding: tuple[float, ...] | None = None
    embedding_entry: int | None = None
    correlation_id: str = ""
    correlation_entry: int | None = None

    def merge(self, at: int, result: InsightResult) -> None:
        """Merge the entry at position `at` (in any order, as the SQL does)."""
        self.post_entry = max(self.post_entry, at)
        if result.correlation_id and _newer(self.correlation_entry, at):
            self.correlation_id, self.correlation_entry = result.correlation_id, at
        self.services.add(result.service)
        match result.payload:
            case Moderation(is_safe=is_safe, confidence=confidence):
                if takes_verdict(self.is_safe, self.moderation_entry, is_safe, at):
                    self.is_safe, self.confidence = is_safe, confidence
                    self.moderation_entry = at
            case Tagging(tags=tags) if _newer(self.tagging_entry, at):
                self.tags, self.tagging_entry = tags, at
            case SceneRecognition(scenes=scenes) if _newer(self.scenes_entry, at):
                self.scenes, self.scenes_entry = scenes, at
            case ImageCaptioning(caption=caption) if _newer(self.caption_entry, at):
                self.caption, self.caption_entry = caption, at
            case ImageEmbedding(embedding=embedding) if _newer(self.embedding_entry, at):
                self.embedding, self.embedding_entry = embedding, at


def _newer(stored: int | None, incoming: int) -> bool:
    """`kaleido_newer` (migration 0006)."""
    return stored is None or incoming > stored


def takes_verdict(
    stored_safe: bool | None, stored: int | None, incoming_safe: bool, incoming: int
) -> bool:
    """`kaleido_takes_verdict` (migration 0006): unsafe is sticky and the earliest unsafe
    verdict is the one shown; a safe verdict replaces an older safe one only."""
    if not incoming_safe:
        return stored_safe is not False or (stored is not None and incoming < stored)
    return stored_safe is not False and (stored is None or incoming > stored)


# A value changes only for a newer entry (`kaleido_newer`); `services_completed` is the sorted
# union, the status UNSAFE once any verdict was.
_UPSERT_INSIGHTS = """
INSERT INTO media_ai_insights AS m (
    media_id, post_id, status, is_safe, moderation_confidence, caption, tags, scenes,
    image_embedding, services_completed, correlation_id, updated_at, post_entry,
    moderation_entry, tagging_entry, scenes_entry, caption_entry, embedding_entry,
    correlation_entry)
SELECT t.media_id, t.post_id,
       CASE WHEN t.is_safe IS FALSE THEN 'UNSAFE' ELSE 'COMPLETED' END,
       t.is_safe, t.confidence, t.caption,
       CASE WHEN t.tags IS NULL THEN NULL
            ELSE ARRAY(SELECT jsonb_array_elements_text(t.tags::jsonb)) END,
       CASE WHEN t.scenes IS NULL THEN NULL
            ELSE ARRAY(SELECT jsonb_array_elements_text(t.scenes::jsonb)) END,
       {embedding}, t.services::text[], NULLIF(t.correlation_id, ''), now(), t.post_entry,
       t.moderation_entry, t.tagging_entry, t.scenes_entry, t.caption_entry,
       t.embedding_entry, t.correlation_entry
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::boolean[], $5::float8[], $6::text[],
            $7::text[], $8::text[], $9::integer[], $10::integer[], $11::integer[], $12::text[],
            $14::numeric[], $15::numeric[], $16::numeric[], $17::numeric[], $18::numeric[],
            $19::numeric[], $20::numeric[])
     AS t(media_id, post_id, services, is_safe, confidence, caption, tags, scenes,
          embedding_first, embedding_last, embedding_length, correlation_id, post_entry,
          moderation_entry, tagging_entry, scenes_entry, caption_entry, embedding_entry,
          correlation_entry)
WHERE kaleido_media_of_post(t.media_id, t.post_id)
ON CONFLICT (media_id) DO UPDATE SET
    post_id = CASE WHEN kaleido_newer(m.post_entry, EXCLUDED.post_entry)
                   THEN EXCLUDED.post_id ELSE m.post_id END,
    post_entry = GREATEST(m.post_entry, EXCLUDED.post_entry),
    is_safe = CASE WHEN kaleido_takes_verdict(m.is_safe, m.moderation_entry,
                                              EXCLUDED.is_safe, EXCLUDED.moderation_entry)
                   THEN EXCLUDED.is_safe ELSE m.is_safe END,
    moderation_confidence = CASE
        WHEN kaleido_takes_verdict(m.is_safe, m.moderation_entry,
                                   EXCLUDED.is_safe, EXCLUDED.moderation_entry)
        THEN EXCLUDED.moderation_confidence ELSE m.moderation_confidence END,
    moderation_entry = CASE
        WHEN kaleido_takes_verdict(m.is_safe, m.moderation_entry,
                                   EXCLUDED.is_safe, EXCLUDED.moderation_entry)
        THEN EXCLUDED.moderation_entry ELSE m.moderation_entry END,
    caption = CASE WHEN kaleido_newer(m.caption_entry, EXCLUDED.caption_entry)
                   THEN EXCLUDED.caption ELSE m.caption END,
    caption_entry = GREATEST(m.caption_entry, EXCLUDED.caption_entry),
    tags = CASE WHEN kaleido_newer(m.tagging_entry, EXCLUDED.tagging_entry)
                THEN EXCLUDED.tags ELSE m.tags END,
    tagging_entry = GREATEST(m.tagging_entry, EXCLUDED.tagging_entry),
    scenes = CASE WHEN kaleido_newer(m.scenes_entry, EXCLUDED.scenes_entry)
                  THEN EXCLUDED.scenes ELSE m.scenes END,
    scenes_entry = GREATEST(m.scenes_entry, EXCLUDED.scenes_entry),
    image_embedding = CASE WHEN kaleido_newer(m.embedding_entry, EXCLUDED.embedding_entry)
                           THEN EXCLUDED.image_embedding ELSE m.image_embedding END,
    embedding_entry = GREATEST(m.embedding_entry, EXCLUDED.embedding_entry),
    services_completed = ARRAY(
        SELECT DISTINCT s FROM unnest(m.services_completed || EXCLUDED.services_completed) AS s
        ORDER BY s),
    status = CASE WHEN m.status = 'UNSAFE' OR EXCLUDED.status = 'UNSAFE'
                  THEN 'UNSAFE' ELSE 'COMPLETED' END,
    correlation_id = CASE WHEN kaleido_newer(m.correlation_entry, EXCLUDED.correlation_entry)
                          THEN EXCLUDED.correlation_id ELSE m.correlation_id END,
    correlation_entry = GREATEST(m.correlation_entry, EXCLUDED.correlation_entry),
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
        for entry_id, result in messages:
            key = (result.media_id, result.post_id)
            row = rows.get(key)
            if row is None:
                row = rows[key] = _Insight(result.media_id, result.post_id)
            row.merge(position(entry_id), result)
            if isinstance(result.payload, Moderation) and not result.payload.is_safe:
                unsafe_media.add(result.media_id)
        items = list(rows.values())
        embeddings = Packed.of([r.embedding for r in items])
        args = (
            [r.media_id for r in items],
            [r.post_id for r in items],
            ["{" + ",".join(sorted(r.services)) + "}" for r in items],  # names are identifiers
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
            positions([r.post_entry for r in items]),
            positions([r.moderation_entry for r in items]),
            positions([r.tagging_entry for r in items]),
            positions([r.scenes_entry for r in items]),
            positions([r.caption_entry for r in items]),
            positions([r.embedding_entry for r in items]),
            positions([r.correlation_entry for r in items]),
        )
        statements: list[Statement] = [(_UPSERT_INSIGHTS, args)]
        if unsafe_media:
            statements.append((FLAG_POSTS_OF_MEDIA, (sorted(unsafe_media),)))
        return statements
