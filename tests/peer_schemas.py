"""What the real ML service's readers require of each outbound stream's fields, after their own
decoding (CONTRACT 2b): every field JSON-decoded, the text kept only when decoding fails; the
media preprocessor alone reads `post-image-processing` as raw text, then hands the correlation
id on to workers that decode it.

`problems(stream, fields)` lists every field that would not pass; an empty list is a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kaleido.messages import (
    AGGREGATION_TRIGGER_STREAM,
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_PICTURE_STREAM,
    SEARCH_SYNC_STREAM,
    keeps_type,
    peer_fields,
)

Check = Callable[[Any], bool]


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _media_ids(value: Any) -> bool:
    # "42,43" stays text; a single "42" decodes to 42: the aggregator reads both.
    return _number(value) or (_text(value) and all(p.isdigit() for p in value.split(",")))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _element(item: Any) -> bool:
    """One (media, service) of mediaInsights, as the aggregator reads it."""
    if not isinstance(item, dict) or not _text(item.get("mediaId")):
        return False
    checks: dict[str, Check] = {
        "moderation": lambda i: (
            i.get("isSafe") in ("true", "false")
            and isinstance(i.get("moderationConfidence", 1.0), int | float)
        ),
        "tagging": lambda i: _strings(i.get("tags")),
        "scene_recognition": lambda i: _strings(i.get("scenes")),
        "image_captioning": lambda i: _text(i.get("caption")),
        "face": lambda i: _number(i.get("facesDetected")),
    }
    check = checks.get(item.get("service", ""))
    return check is not None and check(item)


def _media_insights(value: Any) -> bool:
    return isinstance(value, list) and all(_element(item) for item in value)


_DECODED: dict[str, dict[str, Check]] = {
    PROFILE_PICTURE_STREAM: {
        "userId": _number,
        "imageUrl": _text,
        "correlationId": _text,
        "timestamp": _text,
    },
    AGGREGATION_TRIGGER_STREAM: {
        "postId": _number,
        "totalMedia": _number,
        "allMediaIds": _media_ids,
        "timestamp": _text,
        "correlationId": _text,
        "mediaInsights": _media_insights,
    },
    SEARCH_SYNC_STREAM: {
        "indexType": _text,
        "operation": lambda v: v in ("index", "delete"),
        "documentId": lambda v: _text(v) or _number(v),
        "timestamp": _text,
        "correlationId": _text,
    },
}
_RAW = ("postId", "mediaId", "mediaUrl", "imageUrl", "uploaderId", "timestamp", "correlationId")


def problems(stream: str, fields: Mapping[str, str]) -> list[str]:
    """The fields of an outbound entry the ML service's readers would refuse or misread."""
    if stream in (POST_IMAGE_STREAM, POST_UPDATE_STREAM):
        out = [f"{name}: missing" for name in _RAW if name not in fields]
        # Read raw here, but handed on to workers that decode it.
        if not keeps_type(fields.get("correlationId", "")):
            out.append(f"correlationId: {fields.get('correlationId')!r} changes under decoding")
        return out
    decoded = peer_fields(fields)
    out = []
    for name, check in _DECODED[stream].items():
        if name not in decoded:
            out.append(f"{name}: missing")
        elif not check(decoded[name]):
            out.append(f"{name}: {decoded[name]!r:.80} is not what the ML service reads")
    text_keyed = decoded.get("indexType") in ("known_faces_index", "face_search")
    # Their sync compares these with a text column, without a cast.
    if stream == SEARCH_SYNC_STREAM and text_keyed and not _text(decoded.get("documentId")):
        out.append(f"documentId: {decoded.get('documentId')!r} is not text")
    return out
