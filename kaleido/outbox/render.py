"""An aggregation claim rendered as its `post-aggregation-trigger`, when it is published.

The trigger carries the post's media insights as they are when it goes out (at least the four
results its claim required), one `MediaServiceResult` per (media, service), and the claim's
correlation id, which the answer must carry. A claim whose media set has changed since is not
rendered: the new set claims its own trigger once it is complete.
"""

from __future__ import annotations

from typing import Any

from kaleido.gateways import Transaction
from kaleido.messages import AggregationTrigger, MediaServiceResult

_LATEST_CLAIM = """
SELECT a.correlation_id, a.media_version = p.media_version AS current
FROM post_aggregations a JOIN posts p ON p.post_id = a.post_id
WHERE a.post_id = $1 ORDER BY a.media_version DESC LIMIT 1
"""

_MEDIA = """
SELECT m.media_id, i.services_completed, i.is_safe, i.moderation_confidence, i.tags, i.scenes,
       i.caption,
       (SELECT count(*) FROM media_detected_faces f WHERE f.media_id = m.media_id) AS faces
FROM post_media m LEFT JOIN media_ai_insights i ON i.media_id = m.media_id
WHERE m.post_id = $1 ORDER BY m.position, m.media_id
"""


def _results(row: Any) -> list[MediaServiceResult]:
    media_id, done = row["media_id"], set(row["services_completed"] or ())
    out = []
    if "moderation" in done:
        out.append(
            MediaServiceResult(
                media_id,
                "moderation",
                is_safe=row["is_safe"],
                moderation_confidence=row["moderation_confidence"],
            )
        )
    if "tagging" in done:
        out.append(MediaServiceResult(media_id, "tagging", tags=tuple(row["tags"] or ())))
    if "scene_recognition" in done:
        scenes = tuple(row["scenes"] or ())
        out.append(MediaServiceResult(media_id, "scene_recognition", scenes=scenes))
    if "image_captioning" in done:
        out.append(MediaServiceResult(media_id, "image_captioning", caption=row["caption"] or ""))
    if row["faces"]:
        out.append(MediaServiceResult(media_id, "face", faces_detected=int(row["faces"])))
    return out


async def render_aggregation(tx: Transaction, post_id: int) -> AggregationTrigger | None:
    """The post's trigger as of now, or None when its latest claim is superseded (or gone)."""
    claim = await tx.fetchrow(_LATEST_CLAIM, post_id)
    if claim is None or not claim["current"]:
        return None
    rows = await tx.fetch(_MEDIA, post_id)
    return AggregationTrigger(
        post_id=post_id,
        media_ids=tuple(row["media_id"] for row in rows),
        media_insights=tuple(result for row in rows for result in _results(row)),
        correlation_id=claim["correlation_id"],
    )
