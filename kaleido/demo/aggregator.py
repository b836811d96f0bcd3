"""The stand-in ML aggregator (pure): post-level insights from a trigger's `mediaInsights`.

Like the real aggregator it reads nothing but the trigger: every tag and scene of the post, the
most frequent ones, the number of faces, whether every media is safe (and the lowest moderation
confidence), a caption for the whole post and a guess at the kind of event.
"""

from __future__ import annotations

from collections import Counter

from kaleido.messages import AggregationTrigger, PostInsightsResult

TOP_TAGS = 10
TOP_SCENES = 5
# An event type when enough of its labels show up among the post's tags and scenes.
_EVENTS = (
    ("beach_day", {"beach", "sunset"}),
    ("party", {"party", "friends", "music"}),
    ("food", {"food", "coffee", "restaurant", "kitchen"}),
    ("outdoors", {"mountain", "forest", "park", "snow"}),
    ("city", {"city", "street", "car"}),
)


def _event_type(labels: set[str]) -> str:
    scored = [(len(labels & wanted), name) for name, wanted in _EVENTS]
    score, name = max(scored)
    return name if score >= 2 else "general"


def aggregate(trigger: AggregationTrigger) -> PostInsightsResult:
    tags: list[str] = []
    scenes: list[str] = []
    captions: list[str] = []
    faces = 0
    safe = True
    confidence = 1.0
    for item in trigger.media_insights:
        tags += item.tags or ()
        scenes += item.scenes or ()
        if item.caption:
            captions.append(item.caption)
        faces += item.faces_detected or 0
        if item.is_safe is False:
            safe = False
        if item.moderation_confidence is not None:
            confidence = min(confidence, item.moderation_confidence)
    top_tags = tuple(tag for tag, _ in Counter(tags).most_common(TOP_TAGS))
    top_scenes = tuple(scene for scene, _ in Counter(scenes).most_common(TOP_SCENES))
    caption = " ".join(captions[:3]) if captions else "A visual post"
    media = len(trigger.media_ids)
    return PostInsightsResult(
        post_id=trigger.post_id,
        media_count=media,
        all_ai_tags=tuple(tags),
        all_ai_scenes=tuple(scenes),
        aggregated_tags=top_tags,
        aggregated_scenes=top_scenes,
        total_faces=faces,
        is_safe=safe,
        moderation_confidence=confidence,
        inferred_event_type=_event_type(set(top_tags) | set(top_scenes)),
        combined_caption=caption,
        has_multiple_images=media > 1,
        correlation_id=trigger.correlation_id,
        version="1",
    )
