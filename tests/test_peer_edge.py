"""At the ML service's edge: outbound entries read the way its workers read them (JSON-decoding
every field), and inbound entries shaped exactly as its producers write them (CONTRACT 2b),
Java-style variants included."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaleido.http.middleware import CorrelationIdMiddleware
from kaleido.messages import (
    AGGREGATION_TRIGGER_STREAM,
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_PICTURE_STREAM,
    SEARCH_SYNC_STREAM,
    AggregationTrigger,
    DecodeError,
    MediaServiceResult,
    PostMediaEvent,
    ProfilePictureEvent,
    SearchSyncEvent,
    decode_aggregation_trigger,
    decode_insight,
    decode_post_insights,
    decode_profile_face,
    encode_aggregation_trigger,
    encode_post_media,
    encode_profile_picture,
    encode_search_sync,
    keeps_type,
    known_face_id,
    usable_correlation_id,
)
from kaleido.outbox import outbound_correlation_id

from .peer_schemas import problems

NOW = datetime(2026, 5, 4, 10, 15, 30, 123456, tzinfo=UTC)

# Header values: the header's alphabet, JSON literals and numbers of every shape, and text that
# is JSON of another kind (quoted strings, lists, objects).
header_ids = st.one_of(
    st.sampled_from(
        [
            "1234567890",
            "0",
            "-1",
            "1e5",
            "1.5",
            "1E-3",
            "true",
            "false",
            "null",
            "NaN",
            "Infinity",
            "-Infinity",
            "None",
            '"quoted"',
            "[1]",
            '{"a":1}',
            "00123",
            "1-2",
            "req-abc.1",
            "a" * 129,
            "",
        ]
    ),
    st.from_regex(r"[A-Za-z0-9._:-]{1,130}", fullmatch=True),
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.text(alphabet='0123456789eE.+-"[]{}:,tnrufalsNIiy ', max_size=24),
)


async def _request_correlation_id(header: str | None) -> str:
    """What `outbound_correlation_id()` gives inside a request carrying `header`."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(outbound_correlation_id())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    headers = [] if header is None else [(b"x-correlation-id", header.encode("utf-8"))]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    await CorrelationIdMiddleware(app)({"type": "http", "headers": headers}, receive, send)
    (cid,) = seen
    return cid


def _outbound_entries(cid: str, inbound_cid: str) -> dict[str, dict[str, str]]:
    """One entry of every outbound stream, as Kaleido builds them in a request carrying `cid`
    and in answer to an inbound entry that carried `inbound_cid` (already decoded)."""
    media = PostMediaEvent(7, 42, "https://cdn.example.com/42.jpg", 9, cid, NOW)
    trigger = AggregationTrigger(
        7,
        (42,),
        (
            MediaServiceResult(42, "moderation", is_safe=False, moderation_confidence=0.97),
            MediaServiceResult(42, "tagging", tags=("dog", "1", "true")),
            MediaServiceResult(42, "scene_recognition", scenes=("park",)),
            MediaServiceResult(42, "image_captioning", caption="null"),
            MediaServiceResult(42, "face", faces_detected=2),
        ),
        str(uuid.uuid4()),
        NOW,
    )
    search = SearchSyncEvent(
        "known_faces_index", "index", known_face_id(7), inbound_cid or str(uuid.uuid4()), NOW
    )
    return {
        POST_IMAGE_STREAM: encode_post_media(media),
        POST_UPDATE_STREAM: encode_post_media(media),
        PROFILE_PICTURE_STREAM: encode_profile_picture(
            ProfilePictureEvent(7, "https://cdn.example.com/p.jpg", str(uuid.uuid4()), NOW)
        ),
        AGGREGATION_TRIGGER_STREAM: encode_aggregation_trigger(trigger),
        SEARCH_SYNC_STREAM: encode_search_sync(search),
    }


@given(header=st.none() | header_ids, inbound=header_ids)
async def test_every_outbound_entry_reads_as_the_ml_service_needs(
    header: str | None, inbound: str
) -> None:
    cid = await _request_correlation_id(header)
    assert keeps_type(cid)
    if header is not None and usable_correlation_id(header) is not None:
        assert cid == header  # a usable caller id is forwarded as it is
    entry = {b"mediaId": b"42", b"postId": b"7", b"service": b"caption",
             b"correlationId": inbound.encode()}  # fmt: skip
    echoed = decode_insight({**entry, b"service": b"image_captioning", b"caption": b"x"})
    inbound_cid = echoed.correlation_id  # type: ignore[union-attr]
    assert inbound_cid == "" or keeps_type(inbound_cid)  # never echoed if it would change
    for stream, fields in _outbound_entries(cid, inbound_cid).items():
        assert problems(stream, fields) == [], (stream, fields)


def test_a_single_media_trigger_reads_back_as_the_aggregator_reads_it() -> None:
    trigger = AggregationTrigger(
        7, (42,), (MediaServiceResult(42, "tagging", tags=("a",)),), "c-1", NOW
    )
    fields = encode_aggregation_trigger(trigger)
    assert fields["allMediaIds"] == "42"  # decodes to the int 42, which the aggregator reads
    back = decode_aggregation_trigger(fields)
    assert (back.post_id, back.media_ids, back.media_insights) == (7, (42,), trigger.media_insights)
    two = encode_aggregation_trigger(AggregationTrigger(7, (42, 43), (), "c-1", NOW))
    assert two["allMediaIds"] == "42,43" and two["totalMedia"] == "2"


# --------------------------------------------------------------------------- inbound, as written

PROFILE_FACE = {"userId": "7", "faceEmbedding": json.dumps([0.25] * 1408),
                "correlationId": "9b2f6b7e-1f0e-4a53-9d0e-6a1c2b3d4e5f"}  # fmt: skip
ENRICHED = {
    "postId": "17",
    "mediaCount": "3",
    "allAiTags": json.dumps(["dog", "park", "dog"]),
    "allAiScenes": json.dumps(["outdoor"]),
    "aggregatedTags": json.dumps(["dog", "park"]),
    "aggregatedScenes": json.dumps(["outdoor"]),
    "totalFaces": "2",
    "isSafe": "false",
    "moderationConfidence": "0.42",
    "inferredEventType": "general",
    "combinedCaption": "",
    "hasMultipleImages": "true",
    "timestamp": "2026-05-04T10:15:30.123456Z",
    "correlationId": "3c1e0f4a-7b9d-4e2a-8f6b-0a1b2c3d4e5f",
    "version": "1",
}


def test_the_enrolment_answer_as_the_ml_service_writes_it() -> None:
    answer = decode_profile_face(PROFILE_FACE)
    assert (answer.user_id, len(answer.embedding), answer.usable) == (7, 1408, True)
    assert answer.correlation_id == PROFILE_FACE["correlationId"]
    zeros = decode_profile_face({**PROFILE_FACE, "faceEmbedding": json.dumps([0.0] * 1408)})
    assert not zeros.usable  # recorded, not enrolled
    # Their publisher writes "None" for an id it decoded to null: no id to match.
    assert decode_profile_face({**PROFILE_FACE, "correlationId": "None"}).correlation_id == ""
    assert decode_profile_face({**PROFILE_FACE, "correlationId": "123"}).correlation_id == ""
    for size in (512, 1409):
        with pytest.raises(DecodeError, match=f"faceEmbedding: {size} floats, expected exactly"):
            decode_profile_face({**PROFILE_FACE, "faceEmbedding": json.dumps([0.5] * size)})
    with pytest.raises(DecodeError, match="faceEmbedding: expected at least one number"):
        decode_profile_face({**PROFILE_FACE, "faceEmbedding": "[]"})
    # HuggingFace platform: a 1408-float face (faces are 1408 on both platforms).
    assert len(decode_profile_face(PROFILE_FACE, embedding_dim=1408).embedding) == 1408


def test_the_enriched_answer_as_the_aggregator_writes_it() -> None:
    result = decode_post_insights(ENRICHED)
    assert (result.post_id, result.media_count, result.total_faces) == (17, 3, 2)
    assert result.all_ai_tags == ("dog", "park", "dog")
    assert result.aggregated_tags == ("dog", "park") and result.aggregated_scenes == ("outdoor",)
    assert (result.is_safe, result.moderation_confidence) == (False, 0.42)
    assert result.combined_caption == "" and result.has_multiple_images
    assert result.correlation_id == ENRICHED["correlationId"] and result.version == "1"


def test_java_style_variants_of_the_enriched_answer() -> None:
    # Comma-separated lists, a missing optional field, a "None" correlation id.
    variant = {**ENRICHED, "aggregatedTags": "dog, park", "allAiScenes": "outdoor,beach",
               "correlationId": "None"}  # fmt: skip
    del variant["combinedCaption"], variant["hasMultipleImages"], variant["timestamp"]
    result = decode_post_insights(variant)
    assert result.aggregated_tags == ("dog", "park")
    assert result.all_ai_scenes == ("outdoor", "beach")
    assert result.combined_caption == "" and not result.has_multiple_images
    assert result.timestamp is None and result.correlation_id == ""
    with pytest.raises(DecodeError, match="isSafe: missing"):
        decode_post_insights({k: v for k, v in ENRICHED.items() if k != "isSafe"})
    with pytest.raises(DecodeError, match="moderationConfidence"):
        decode_post_insights({**ENRICHED, "moderationConfidence": "7"})
