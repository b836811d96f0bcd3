"""`post-insights-enriched` → `post_insights` (and `posts.status` for an unsafe post).

Only the answer to the post's latest aggregation trigger counts: its correlation id must be
that of the post's latest claim in `post_aggregations`. An answer to an earlier trigger (the
media set changed since), or to none, is stale: recorded, counted, changes nothing. The valid
answers of a batch are applied one after the other, in stream order, as one by one (one answer
per trigger: nothing to merge).

`isSafe` false flags the post (Kaleido's rule; a later safe answer never unflags it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from kaleido.flagging import FLAG_POSTS
from kaleido.gateways import Transaction
from kaleido.messages import (
    POST_INSIGHTS_STREAM,
    Fields,
    PostInsightsResult,
    decode_post_insights,
)
from kaleido.streams.handlers.base import Stale, answers_to_latest, position

_LATEST = """
SELECT DISTINCT ON (post_id) post_id, correlation_id FROM post_aggregations
WHERE post_id = ANY($1::bigint[]) ORDER BY post_id, media_version DESC
"""

_STORE = """
INSERT INTO post_insights AS p (
    post_id, media_count, all_ai_tags, all_ai_scenes, aggregated_tags, aggregated_scenes,
    total_faces, is_safe, moderation_confidence, inferred_event_type, combined_caption,
    has_multiple_images, correlation_id, aggregated_at, updated_at, entry)
SELECT t.post_id, t.media_count,
       ARRAY(SELECT jsonb_array_elements_text(t.all_tags::jsonb)),
       ARRAY(SELECT jsonb_array_elements_text(t.all_scenes::jsonb)),
       ARRAY(SELECT jsonb_array_elements_text(t.tags::jsonb)),
       ARRAY(SELECT jsonb_array_elements_text(t.scenes::jsonb)),
       t.faces, t.is_safe, t.confidence, t.event_type, t.caption, t.multiple,
       t.correlation_id, t.aggregated_at, now(), $15::numeric
FROM (VALUES ($1::bigint, $2::integer, $3::text, $4::text, $5::text, $6::text, $7::integer,
              $8::boolean, $9::float8, $10::text, $11::text, $12::boolean, $13::text,
              $14::timestamptz))
     AS t(post_id, media_count, all_tags, all_scenes, tags, scenes, faces, is_safe, confidence,
          event_type, caption, multiple, correlation_id, aggregated_at)
ON CONFLICT (post_id) DO UPDATE SET
    media_count = EXCLUDED.media_count, all_ai_tags = EXCLUDED.all_ai_tags,
    all_ai_scenes = EXCLUDED.all_ai_scenes, aggregated_tags = EXCLUDED.aggregated_tags,
    aggregated_scenes = EXCLUDED.aggregated_scenes, total_faces = EXCLUDED.total_faces,
    is_safe = EXCLUDED.is_safe, moderation_confidence = EXCLUDED.moderation_confidence,
    inferred_event_type = EXCLUDED.inferred_event_type,
    combined_caption = EXCLUDED.combined_caption,
    has_multiple_images = EXCLUDED.has_multiple_images,
    correlation_id = EXCLUDED.correlation_id, aggregated_at = EXCLUDED.aggregated_at,
    updated_at = now(), entry = EXCLUDED.entry
-- An answer to a newer trigger, or the newer of two answers to one trigger (a repeat).
WHERE p.correlation_id IS DISTINCT FROM EXCLUDED.correlation_id
   OR kaleido_newer(p.entry, EXCLUDED.entry)
"""


def _json(labels: tuple[str, ...]) -> str:
    return json.dumps(list(labels))


@attrs.frozen
class PostInsightsHandler:
    """`post-insights-enriched` → `post_insights`."""

    stream: str = POST_INSIGHTS_STREAM

    def decode(self, fields: Fields) -> PostInsightsResult:
        return decode_post_insights(fields)

    async def apply(
        self, tx: Transaction, messages: Sequence[tuple[str, PostInsightsResult]]
    ) -> Stale:
        answers, stale = await answers_to_latest(
            tx, _LATEST, "post_id", messages, lambda r: r.post_id
        )
        for entry_id, r in answers:
            await tx.execute(
                _STORE,
                r.post_id,
                r.media_count,
                _json(r.all_ai_tags),
                _json(r.all_ai_scenes),
                _json(r.aggregated_tags),
                _json(r.aggregated_scenes),
                r.total_faces,
                r.is_safe,
                r.moderation_confidence,
                r.inferred_event_type,
                r.combined_caption,
                r.has_multiple_images,
                r.correlation_id,
                r.timestamp,
                str(position(entry_id)),
            )
            if not r.is_safe:
                await tx.execute(FLAG_POSTS, [r.post_id])
        return stale
