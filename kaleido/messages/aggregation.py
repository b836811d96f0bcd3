"""Post-level aggregation (CONTRACT 2b): the ``post-aggregation-trigger`` Kaleido sends and the
``post-insights-enriched`` answer it reads.

The trigger carries, in ``mediaInsights``, one element per (media, service) with that
service's value, so the ML aggregator needs nothing else (it reads no database). The answer
names the trigger by its ``correlationId``.
"""

from __future__ import annotations

import json
from typing import Any

from kaleido.messages.converter import converter, register
from kaleido.messages.entry import index_fields, structure_entry, text_field
from kaleido.messages.limits import MAX_CAPTION_CHARS
from kaleido.messages.model import (
    AggregationTrigger,
    DecodeError,
    Fields,
    MediaServiceResult,
    PostInsightsResult,
)
from kaleido.messages.peer import peer_decode
from kaleido.messages.values import (
    as_is,
    boolean,
    capped,
    echoed_correlation_id,
    iso_timestamp,
    labels,
    non_negative_count,
    positive_id,
    probability,
    quote,
    utc_timestamp,
)

# The aggregator lists every tag of every media (up to 50 media of up to 256 tags each) and
# joins up to three captions; its event types are short identifiers.
MAX_ALL_LABELS = 50 * 256
MAX_COMBINED_CAPTION_CHARS = 3 * MAX_CAPTION_CHARS + 2
MAX_EVENT_TYPE_CHARS = 64

# --------------------------------------------------------------------------- the trigger


def _service_value(item: MediaServiceResult) -> dict[str, Any]:
    match item.service:
        case "moderation":
            value: dict[str, Any] = {"isSafe": "false" if item.is_safe is False else "true"}
            if item.moderation_confidence is not None:
                value["moderationConfidence"] = item.moderation_confidence
            return value
        case "tagging":
            return {"tags": list(item.tags or ())}
        case "scene_recognition":
            return {"scenes": list(item.scenes or ())}
        case "image_captioning":
            return {"caption": item.caption or ""}
        case "face":
            return {"facesDetected": item.faces_detected or 0}
    return {}


def encode_aggregation_trigger(trigger: AggregationTrigger) -> dict[str, str]:
    """Fields of a ``post-aggregation-trigger`` entry, in the backend's order. ``isSafe`` is
    the string ``"true"``/``"false"`` inside ``mediaInsights``, as the aggregator compares it."""
    insights = [
        {"mediaId": str(item.media_id), "service": item.service, **_service_value(item)}
        for item in trigger.media_insights
    ]
    return {
        "postId": str(trigger.post_id),
        "totalMedia": str(trigger.total_media),
        "allMediaIds": ",".join(map(str, trigger.media_ids)),
        "timestamp": utc_timestamp(trigger.timestamp),
        "correlationId": trigger.correlation_id,
        "mediaInsights": json.dumps(insights, separators=(",", ":")),
    }


def _media_ids(value: object) -> tuple[int, ...]:
    # "42,43" stays text for the peer; a single "42" decodes to the int 42.
    text = value if isinstance(value, str) else str(value)
    try:
        return tuple(int(part) for part in text.strip("[]").split(",") if part.strip())
    except ValueError:
        raise DecodeError(
            "allMediaIds", f"expected comma-separated ids, got {quote(text)}"
        ) from None


def _element(raw: object) -> MediaServiceResult:
    if not isinstance(raw, dict):
        raise DecodeError("mediaInsights", f"expected objects, got {quote(raw)}")
    tags, scenes = raw.get("tags"), raw.get("scenes")
    confidence = raw.get("moderationConfidence")
    faces = raw.get("facesDetected")
    try:
        return MediaServiceResult(
            media_id=int(raw.get("mediaId", 0)),
            service=str(raw.get("service", "")),
            is_safe=None if "isSafe" not in raw else raw["isSafe"] == "true",
            moderation_confidence=None if confidence is None else float(confidence),
            tags=None if tags is None else tuple(tags),
            scenes=None if scenes is None else tuple(scenes),
            caption=raw.get("caption"),
            faces_detected=None if faces is None else int(faces),
        )
    except (TypeError, ValueError) as exc:
        raise DecodeError("mediaInsights", f"bad element {quote(raw)}: {exc}") from None


def decode_aggregation_trigger(fields: Fields) -> AggregationTrigger:
    """Read a trigger the way the ML aggregator does: every field JSON-decoded first (CONTRACT
    2b); for the stand-in ML service and the tests at the peer's edge."""
    entry = {
        k: peer_decode(v.decode() if isinstance(v, bytes) else v)
        for k, v in index_fields(fields).items()
        if isinstance(v, bytes | str)
    }
    post_id = entry.get("postId")
    if isinstance(post_id, bool) or not isinstance(post_id, int) or post_id < 1:
        raise DecodeError("postId", f"expected a positive number, got {quote(post_id)}")
    insights = entry.get("mediaInsights", [])
    if not isinstance(insights, list):
        raise DecodeError("mediaInsights", f"expected a JSON list, got {quote(insights)}")
    correlation_id = entry.get("correlationId")
    if not isinstance(correlation_id, str):
        raise DecodeError("correlationId", f"decodes to {quote(correlation_id)}, not text")
    return AggregationTrigger(
        post_id=post_id,
        media_ids=_media_ids(entry.get("allMediaIds", "")),
        media_insights=tuple(_element(item) for item in insights),
        correlation_id=correlation_id,
    )


# --------------------------------------------------------------------------- the answer


_ALL_LABELS = labels(MAX_ALL_LABELS)

# The aggregator may leave out these fields: each absent one reads as this wire text.
register(
    PostInsightsResult,
    {
        "allAiTags": "",
        "allAiScenes": "",
        "aggregatedTags": "",
        "aggregatedScenes": "",
        "totalFaces": "0",
        "moderationConfidence": "1.0",
        "inferredEventType": "general",
        "combinedCaption": "",
        "hasMultipleImages": "false",
    },
    post_id=text_field("postId", positive_id),
    media_count=text_field("mediaCount", non_negative_count),
    all_ai_tags=text_field("allAiTags", _ALL_LABELS),
    all_ai_scenes=text_field("allAiScenes", _ALL_LABELS),
    aggregated_tags=text_field("aggregatedTags", _ALL_LABELS),
    aggregated_scenes=text_field("aggregatedScenes", _ALL_LABELS),
    total_faces=text_field("totalFaces", non_negative_count),
    is_safe=text_field("isSafe", boolean),
    moderation_confidence=text_field("moderationConfidence", probability),
    inferred_event_type=text_field(
        "inferredEventType", capped(MAX_EVENT_TYPE_CHARS, "an event type")
    ),
    combined_caption=text_field("combinedCaption", capped(MAX_COMBINED_CAPTION_CHARS, "a caption")),
    has_multiple_images=text_field("hasMultipleImages", boolean),
    correlation_id=text_field("correlationId", echoed_correlation_id),
    timestamp=text_field("timestamp", iso_timestamp),
    version=text_field("version", as_is),
)


def decode_post_insights(fields: Fields) -> PostInsightsResult:
    """Decode a ``post-insights-enriched`` entry; raises :class:`DecodeError`."""
    return structure_entry(index_fields(fields), PostInsightsResult)


def encode_post_insights(result: PostInsightsResult) -> dict[str, str]:
    """The entry exactly as the ML aggregator writes it (its field order; a naive UTC
    timestamp with ``Z``)."""
    timestamp = result.timestamp
    return {
        "postId": str(result.post_id),
        "mediaCount": str(result.media_count),
        "allAiTags": json.dumps(list(result.all_ai_tags)),
        "allAiScenes": json.dumps(list(result.all_ai_scenes)),
        "aggregatedTags": json.dumps(list(result.aggregated_tags)),
        "aggregatedScenes": json.dumps(list(result.aggregated_scenes)),
        "totalFaces": str(result.total_faces),
        "isSafe": "true" if result.is_safe else "false",
        "moderationConfidence": str(result.moderation_confidence),
        "inferredEventType": result.inferred_event_type,
        "combinedCaption": result.combined_caption,
        "hasMultipleImages": "true" if result.has_multiple_images else "false",
        "timestamp": "" if timestamp is None else utc_timestamp(timestamp),
        "correlationId": result.correlation_id,
        "version": result.version or "1",
    }


converter.register_unstructure_hook(AggregationTrigger, encode_aggregation_trigger)
converter.register_unstructure_hook(PostInsightsResult, encode_post_insights)
