"""Wire codecs of kaleido.messages: contract examples, poison entries, round trips, fuzzing."""

from __future__ import annotations

import contextlib
import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaleido.errors import KaleidoError
from kaleido.messages import (
    CONSUMER_GROUP,
    CONSUMER_NAMES,
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    FACE_RECOGNITION_STREAM,
    IMAGE_EMBEDDING_DIM,
    INSIGHT_SERVICES,
    INSIGHTS_STREAM,
    MAX_CAPTION_CHARS,
    MAX_FIELD_BYTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_USERNAME_CHARS,
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_PICTURE_STREAM,
    DecodeError,
    DetectedFace,
    FaceDetectionResult,
    FaceRecognitionResult,
    IgnoredEntry,
    ImageCaptioning,
    ImageEmbedding,
    InsightResult,
    Moderation,
    PostMediaEvent,
    ProfilePictureEvent,
    SceneRecognition,
    Tagging,
    decode_face_detection,
    decode_face_recognition,
    decode_inbound,
    decode_insight,
    decode_post_media,
    decode_profile_picture,
    decode_text_fields,
    dlq_stream,
    encode_face_detection,
    encode_face_recognition,
    encode_insight,
    encode_post_media,
    encode_profile_picture,
    usable_correlation_id,
    utc_timestamp,
)
from kaleido.messages.converter import converter

Raw = dict[bytes, bytes]

FACE_UID = "8d0f6c1e-3b7a-4c2d-9e5f-0a1b2c3d4e5f"
STAMP = datetime(2026, 5, 4, 10, 15, 30, 123456, tzinfo=UTC)

# The contract's examples (section 2), exactly as redis-py returns them.
MODERATION_ENTRY: Raw = {
    b"mediaId": b"42",
    b"postId": b"17",
    b"service": b"moderation",
    b"isSafe": b"false",
    b"moderationConfidence": b"0.97",
    b"correlationId": b"c-1",
    b"timestamp": b"2026-05-04T10:15:30.123456Z",
    b"version": b"1",
}
# A face embedding has exactly FACE_EMBEDDING_DIM floats (1408 on both ML platforms).
FACE_VECTOR = [0.01, -0.25] + [0.0] * (FACE_EMBEDDING_DIM - 2)
FACES_JSON = json.dumps(
    [
        {
            "faceId": FACE_UID,
            "bbox": [120, 80, 260, 240],
            "embedding": FACE_VECTOR,
            "confidence": 0.9731,
        }
    ]
)
DETECTION_ENTRY: Raw = {
    b"mediaId": b"42",
    b"postId": b"17",
    b"facesDetected": b"1",
    b"faces": FACES_JSON.encode(),
    b"correlationId": b"c-1",
    b"timestamp": b"2026-05-04T10:15:30.123456Z",
    b"version": b"1",
}
RECOGNITION_ENTRY: Raw = {
    b"mediaId": b"42",
    b"postId": b"17",
    b"faceId": FACE_UID.encode(),
    b"suggestedUserId": b"7",
    b"matchedUsername": b"alice",
    b"confidenceScore": b"0.8734",
    b"correlationId": b"c-1",
}


def insight_entry(service: bytes, **fields: bytes) -> Raw:
    """A minimal insights entry of ``service`` with its specific fields."""
    entry = {b"mediaId": b"42", b"postId": b"17", b"service": service}
    entry.update({key.encode(): value for key, value in fields.items()})
    return entry


def without(entry: Raw, key: bytes) -> Raw:
    return {k: v for k, v in entry.items() if k != key}


def faces_entry(faces: Any) -> Raw:
    return {**DETECTION_ENTRY, b"faces": json.dumps(faces).encode()}


def face(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "faceId": FACE_UID,
        "bbox": [1, 2, 3, 4],
        "embedding": [],  # none: a provider that gives no embedding
        "confidence": 0.5,
    }
    return {**base, **changes}


def as_redis(fields: dict[str, str]) -> Raw:
    """What redis-py returns for an entry written with these fields."""
    return {key.encode(): value.encode() for key, value in fields.items()}


# --------------------------------------------------------------------------- contract examples


def test_contract_moderation_example() -> None:
    assert decode_insight(MODERATION_ENTRY) == InsightResult(
        media_id=42,
        post_id=17,
        payload=Moderation(is_safe=False, confidence=0.97),
        correlation_id="c-1",
        timestamp=STAMP,
        version="1",
    )


def test_contract_face_detection_example() -> None:
    assert decode_face_detection(DETECTION_ENTRY) == FaceDetectionResult(
        media_id=42,
        post_id=17,
        faces_detected=1,
        faces=(
            DetectedFace(
                face_id=FACE_UID,
                bbox=(120, 80, 260, 240),
                embedding=tuple(FACE_VECTOR),
                confidence=0.9731,
            ),
        ),
        correlation_id="c-1",
        timestamp=STAMP,
        version="1",
    )


def test_contract_face_recognition_example() -> None:
    assert decode_face_recognition(RECOGNITION_ENTRY) == FaceRecognitionResult(
        media_id=42,
        post_id=17,
        face_id=FACE_UID,
        suggested_user_id=7,
        confidence=0.8734,
        matched_username="alice",
        correlation_id="c-1",
    )


@pytest.mark.parametrize(
    ("encode", "message", "entry"),
    [
        (encode_insight, decode_insight(MODERATION_ENTRY), MODERATION_ENTRY),
        (encode_face_detection, decode_face_detection(DETECTION_ENTRY), DETECTION_ENTRY),
        (encode_face_recognition, decode_face_recognition(RECOGNITION_ENTRY), RECOGNITION_ENTRY),
    ],
)
def test_ml_encoders_write_the_contract_examples(
    encode: Callable[[Any], dict[str, str]], message: Any, entry: Raw
) -> None:
    """Same fields, same values, same order as the real ML service."""
    assert list(as_redis(encode(message)).items()) == list(entry.items())


def test_str_fields_are_accepted_like_bytes() -> None:
    as_text = {key.decode(): value.decode() for key, value in MODERATION_ENTRY.items()}
    assert decode_insight(as_text) == decode_insight(MODERATION_ENTRY)


def test_decode_inbound_dispatches_on_stream() -> None:
    assert decode_inbound(INSIGHTS_STREAM, MODERATION_ENTRY) == decode_insight(MODERATION_ENTRY)
    assert decode_inbound(FACE_DETECTION_STREAM, DETECTION_ENTRY) == decode_face_detection(
        DETECTION_ENTRY
    )
    assert decode_inbound(FACE_RECOGNITION_STREAM, RECOGNITION_ENTRY) == decode_face_recognition(
        RECOGNITION_ENTRY
    )


# --------------------------------------------------------------------------- insights by service


@pytest.mark.parametrize(
    ("entry", "payload"),
    [
        (insight_entry(b"moderation", isSafe=b"true"), Moderation(is_safe=True)),
        (
            insight_entry(b"moderation", isSafe=b"True", moderationConfidence=b"1"),
            Moderation(is_safe=True, confidence=1.0),
        ),
        (
            insight_entry(b"moderation", isSafe=b"0", moderationConfidence=b"1e-05"),
            Moderation(is_safe=False, confidence=1e-05),
        ),
        (insight_entry(b"moderation", isSafe=b" False "), Moderation(is_safe=False)),
        (insight_entry(b"moderation", isSafe=b"1"), Moderation(is_safe=True)),
        (
            insight_entry(b"tagging", tags=b'["beach", "sunset", "ocean"]'),
            Tagging(tags=("beach", "sunset", "ocean")),
        ),
        (insight_entry(b"tagging", tags=b"a, b,c"), Tagging(tags=("a", "b", "c"))),
        (insight_entry(b"tagging", tags=b" a ,, b, "), Tagging(tags=("a", "b"))),
        (insight_entry(b"tagging", tags=b"[]"), Tagging(tags=())),
        (insight_entry(b"tagging", tags=b""), Tagging(tags=())),
        (
            insight_entry(b"tagging", tags=json.dumps(["café", "a, b"]).encode()),
            Tagging(tags=("café", "a, b")),
        ),
        (
            insight_entry(b"scene_recognition", scenes=b'["beach", "outdoor"]'),
            SceneRecognition(scenes=("beach", "outdoor")),
        ),
        (
            insight_entry(b"scene_recognition", scenes=b"beach,outdoor"),
            SceneRecognition(scenes=("beach", "outdoor")),
        ),
        (
            insight_entry(b"image_captioning", caption=b"  A dog, on a beach.  "),
            ImageCaptioning(caption="  A dog, on a beach.  "),
        ),
        (insight_entry(b"image_captioning", caption=b""), ImageCaptioning(caption="")),
        (
            insight_entry(b"image_embedding", imageEmbedding=b"[0.5, -1, 0, 2e-3]"),
            ImageEmbedding(embedding=(0.5, -1.0, 0.0, 0.002)),
        ),
        (
            insight_entry(b"image_embedding", imageEmbedding=b"0.5, -1,0"),
            ImageEmbedding(embedding=(0.5, -1.0, 0.0)),
        ),
    ],
)
def test_each_service_decodes_only_its_field(entry: Raw, payload: Any) -> None:
    dim = len(payload.embedding) if isinstance(payload, ImageEmbedding) else IMAGE_EMBEDDING_DIM
    result = decode_insight(entry, embedding_dim=dim)
    assert isinstance(result, InsightResult)
    assert result.payload == payload
    assert result.service == payload.SERVICE
    assert (result.media_id, result.post_id) == (42, 17)
    assert (result.correlation_id, result.timestamp, result.version) == ("", None, None)


def test_real_sized_image_embedding() -> None:
    vector = [math.sin(i) / 7 for i in range(1408)]
    entry = insight_entry(b"image_embedding", imageEmbedding=json.dumps(vector).encode())
    assert len(json.dumps(vector)) < MAX_FIELD_BYTES
    result = decode_insight(entry)
    assert isinstance(result, InsightResult)
    assert result.payload == ImageEmbedding(embedding=tuple(vector))


def test_all_zero_embeddings_are_fine() -> None:
    zeros = insight_entry(b"image_embedding", imageEmbedding=json.dumps([0.0] * 1408).encode())
    assert decode_insight(zeros) == InsightResult(42, 17, ImageEmbedding(embedding=(0.0,) * 1408))
    detection = decode_face_detection(
        faces_entry(
            [
                face(embedding=[0] * FACE_EMBEDDING_DIM),
                face(faceId="00000000-0000-0000-0000-000000000001", embedding=[]),
            ]
        )
    )
    assert detection.faces[0].embedding == (0.0,) * FACE_EMBEDDING_DIM
    assert detection.faces[1].embedding == ()


def test_unknown_service_is_ignored_not_an_error() -> None:
    result = decode_insight({b"service": b"ocr", b"mediaId": b"not checked"})
    assert isinstance(result, IgnoredEntry)
    assert result.service == "ocr"
    assert "ocr" in result.reason
    known = ["image_captioning", "image_embedding", "moderation", "scene_recognition", "tagging"]
    assert sorted(INSIGHT_SERVICES) == known


def test_unknown_extra_fields_are_ignored_whatever_they_hold() -> None:
    noisy = {
        **MODERATION_ENTRY,
        b"newField": b"\xff\xfe not utf-8",
        b"\xff\xfe": b"key not utf-8",
        b"bigBlob": b"x" * MAX_FIELD_BYTES,  # unknown, so not decoded; within the entry cap
        b"tags": b"[not even json",  # belongs to another service
    }
    assert decode_insight(noisy) == decode_insight(MODERATION_ENTRY)
    assert decode_face_detection({**DETECTION_ENTRY, b"extra": b"1"}) == decode_face_detection(
        DETECTION_ENTRY
    )
    extra_key_in_face = faces_entry([face(landmarks=[[1, 2]], faceId=FACE_UID)])
    assert decode_face_detection(extra_key_in_face).faces[0].face_id == FACE_UID


def test_optional_common_fields() -> None:
    result = decode_insight(insight_entry(b"moderation", isSafe=b"false"))
    assert isinstance(result, InsightResult)
    assert result.correlation_id == ""
    assert result.timestamp is None
    assert result.version is None
    assert result.payload == Moderation(is_safe=False, confidence=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"2026-05-04T10:15:30.123456Z", STAMP),
        (b"2026-05-04T10:15:30Z", STAMP.replace(microsecond=0)),  # Python isoformat, no fraction
        (b"2026-05-04T10:15:30.123456789Z", STAMP),  # nanoseconds (Java Instant) are truncated
        (b"2026-05-04T12:15:30.123456+02:00", STAMP),
        (b"2026-05-04T10:15:30.123456", STAMP),  # naive: taken as UTC
        (b"", None),
    ],
)
def test_timestamps(text: bytes, expected: datetime | None) -> None:
    result = decode_face_recognition({**RECOGNITION_ENTRY, b"timestamp": text})
    assert result.timestamp == expected
    if expected is not None:
        assert result.timestamp is not None
        assert result.timestamp.utcoffset() == timedelta(0)


def test_faces_detected_may_disagree_with_the_list() -> None:
    """The list is authoritative; the reported count is kept as reported."""
    result = decode_face_detection({**DETECTION_ENTRY, b"facesDetected": b"3"})
    assert result.faces_detected == 3
    assert len(result.faces) == 1
    none = decode_face_detection({**DETECTION_ENTRY, b"facesDetected": b"0", b"faces": b"[]"})
    assert none.faces == ()


def test_face_ids_are_normalised_to_lowercase() -> None:
    upper = FACE_UID.upper()
    detection = decode_face_detection(faces_entry([face(faceId=upper)]))
    recognition = decode_face_recognition({**RECOGNITION_ENTRY, b"faceId": upper.encode()})
    assert detection.faces[0].face_id == recognition.face_id == FACE_UID


def test_bbox_accepts_integral_floats_and_negative_coordinates() -> None:
    result = decode_face_detection(faces_entry([face(bbox=[-3, 80.0, 260, 240.0])]))
    assert result.faces[0].bbox == (-3, 80, 260, 240)
    assert all(type(v) is int for v in result.faces[0].bbox)


def test_legacy_double_encoded_face_fields() -> None:
    """An earlier ML worker JSON-encoded bbox and embedding again and stringified confidence."""
    legacy = face(bbox="[120, 80, 260, 240]", embedding="[0.01, 0.02]", confidence="0.9731")
    result = decode_face_detection(faces_entry([legacy]), embedding_dim=2)
    assert result.faces[0] == DetectedFace(FACE_UID, (120, 80, 260, 240), (0.01, 0.02), 0.9731)


def test_matched_username_is_optional() -> None:
    result = decode_face_recognition(without(RECOGNITION_ENTRY, b"matchedUsername"))
    assert result.matched_username is None


def test_ids_tolerate_surrounding_whitespace_and_leading_zeros() -> None:
    result = decode_face_recognition(
        {**RECOGNITION_ENTRY, b"mediaId": b" 42\n", b"suggestedUserId": b"0007"}
    )
    assert (result.media_id, result.suggested_user_id) == (42, 7)
    top = decode_face_recognition({**RECOGNITION_ENTRY, b"postId": b"9223372036854775807"})
    assert top.post_id == 2**63 - 1


# --------------------------------------------------------------------------- poison entries

Decoder = Callable[[Any], object]
TWO_MB = b"1" * (2 * 1024 * 1024)

POISON: list[tuple[str, Decoder, Any, str]] = [
    # (case, decoder, entry, field the error must name)
    ("missing postId", decode_insight, without(MODERATION_ENTRY, b"postId"), "postId"),
    ("missing mediaId", decode_face_recognition, without(RECOGNITION_ENTRY, b"mediaId"), "mediaId"),
    ("missing service", decode_insight, without(MODERATION_ENTRY, b"service"), "service"),
    ("empty service", decode_insight, {**MODERATION_ENTRY, b"service": b" "}, "service"),
    ("missing isSafe", decode_insight, without(MODERATION_ENTRY, b"isSafe"), "isSafe"),
    ("missing tags", decode_insight, insight_entry(b"tagging"), "tags"),
    ("missing caption", decode_insight, insight_entry(b"image_captioning"), "caption"),
    ("missing faces", decode_face_detection, without(DETECTION_ENTRY, b"faces"), "faces"),
    (
        "missing facesDetected",
        decode_face_detection,
        without(DETECTION_ENTRY, b"facesDetected"),
        "facesDetected",
    ),
    ("missing faceId", decode_face_recognition, without(RECOGNITION_ENTRY, b"faceId"), "faceId"),
    (
        "missing confidenceScore",
        decode_face_recognition,
        without(RECOGNITION_ENTRY, b"confidenceScore"),
        "confidenceScore",
    ),
    ("non-numeric id", decode_insight, {**MODERATION_ENTRY, b"mediaId": b"abc"}, "mediaId"),
    ("negative id", decode_insight, {**MODERATION_ENTRY, b"postId": b"-17"}, "postId"),
    ("zero id", decode_face_detection, {**DETECTION_ENTRY, b"mediaId": b"0"}, "mediaId"),
    (
        "id above 2**63-1",
        decode_insight,
        {**MODERATION_ENTRY, b"mediaId": b"9223372036854775808"},
        "mediaId",
    ),
    ("huge id", decode_insight, {**MODERATION_ENTRY, b"mediaId": b"9" * 5000}, "mediaId"),
    ("plus sign", decode_insight, {**MODERATION_ENTRY, b"mediaId": b"+42"}, "mediaId"),
    ("inner junk", decode_insight, {**MODERATION_ENTRY, b"mediaId": b"4 2"}, "mediaId"),
    ("decimal id", decode_insight, {**MODERATION_ENTRY, b"mediaId": b"42.0"}, "mediaId"),
    ("underscore id", decode_insight, {**MODERATION_ENTRY, b"mediaId": b"4_2"}, "mediaId"),
    (
        "non-ASCII digits",
        decode_insight,
        {**MODERATION_ENTRY, b"mediaId": "٤٢".encode()},
        "mediaId",
    ),
    (
        "negative facesDetected",
        decode_face_detection,
        {**DETECTION_ENTRY, b"facesDetected": b"-1"},
        "facesDetected",
    ),
    (
        "zero suggestedUserId",
        decode_face_recognition,
        {**RECOGNITION_ENTRY, b"suggestedUserId": b"0"},
        "suggestedUserId",
    ),
    ("bad boolean", decode_insight, {**MODERATION_ENTRY, b"isSafe": b"maybe"}, "isSafe"),
    (
        "NaN moderationConfidence",
        decode_insight,
        {**MODERATION_ENTRY, b"moderationConfidence": b"NaN"},
        "moderationConfidence",
    ),
    (
        "infinite moderationConfidence",
        decode_insight,
        {**MODERATION_ENTRY, b"moderationConfidence": b"inf"},
        "moderationConfidence",
    ),
    (
        "moderationConfidence above 1",
        decode_insight,
        {**MODERATION_ENTRY, b"moderationConfidence": b"1.5"},
        "moderationConfidence",
    ),
    (
        "NaN confidenceScore",
        decode_face_recognition,
        {**RECOGNITION_ENTRY, b"confidenceScore": b"nan"},
        "confidenceScore",
    ),
    (
        "malformed timestamp",
        decode_insight,
        {**MODERATION_ENTRY, b"timestamp": b"yesterday"},
        "timestamp",
    ),
    ("tags not strings", decode_insight, insight_entry(b"tagging", tags=b"[1, 2]"), "tags"),
    ("tags bad JSON", decode_insight, insight_entry(b"tagging", tags=b'["a",'), "tags"),
    (
        "scenes an object",
        decode_insight,
        insight_entry(b"scene_recognition", scenes=b'[{"a": 1}]'),
        "scenes",
    ),
    (
        "empty imageEmbedding",
        decode_insight,
        insight_entry(b"image_embedding", imageEmbedding=b"[]"),
        "imageEmbedding",
    ),
    (
        "imageEmbedding with a string",
        decode_insight,
        insight_entry(b"image_embedding", imageEmbedding=b'[0.1, "0.2"]'),
        "imageEmbedding",
    ),
    (
        "imageEmbedding with NaN",
        decode_insight,
        insight_entry(b"image_embedding", imageEmbedding=b"[0.1, NaN]"),
        "imageEmbedding",
    ),
    (
        "imageEmbedding beyond float32",
        decode_insight,
        insight_entry(b"image_embedding", imageEmbedding=b"[1e300]"),
        "imageEmbedding",
    ),
    (
        "imageEmbedding text junk",
        decode_insight,
        insight_entry(b"image_embedding", imageEmbedding=b"0.1, zero"),
        "imageEmbedding",
    ),
    ("bad JSON faces", decode_face_detection, {**DETECTION_ENTRY, b"faces": b"[{"}, "faces"),
    ("faces not a list", decode_face_detection, faces_entry(face()), "faces"),
    ("face not an object", decode_face_detection, faces_entry([1]), "faces"),
    ("bbox wrong length", decode_face_detection, faces_entry([face(bbox=[1, 2, 3])]), "faces"),
    ("bbox not numbers", decode_face_detection, faces_entry([face(bbox=["1", 2, 3, 4])]), "faces"),
    ("bbox boolean", decode_face_detection, faces_entry([face(bbox=[True, 2, 3, 4])]), "faces"),
    ("bbox fractional", decode_face_detection, faces_entry([face(bbox=[1.5, 2, 3, 4])]), "faces"),
    (
        "bbox beyond int4",
        decode_face_detection,
        faces_entry([face(bbox=[2**31, 2, 3, 4])]),
        "faces",
    ),
    ("non-UUID faceId", decode_face_detection, faces_entry([face(faceId="face-1")]), "faces"),
    ("numeric faceId", decode_face_detection, faces_entry([face(faceId=17)]), "faces"),
    (
        "non-UUID faceId (recognition)",
        decode_face_recognition,
        {**RECOGNITION_ENTRY, b"faceId": b"17"},
        "faceId",
    ),
    (
        "NaN face confidence",
        decode_face_detection,
        {**DETECTION_ENTRY, b"faces": json.dumps([face(confidence=math.nan)]).encode()},
        "faces",
    ),
    ("face missing key", decode_face_detection, faces_entry([{"faceId": FACE_UID}]), "faces"),
    (
        "face embedding with null",
        decode_face_detection,
        faces_entry([face(embedding=[0.1, None])]),
        "faces",
    ),
    ("duplicate faceId", decode_face_detection, faces_entry([face(), face()]), "faces"),
    (
        "deeply nested JSON",
        decode_face_detection,
        {**DETECTION_ENTRY, b"faces": b"[" * 100_000},
        "faces",
    ),
    ("2 MB field", decode_insight, {**MODERATION_ENTRY, b"mediaId": TWO_MB}, "mediaId"),
    (
        "2 MB caption",
        decode_insight,
        insight_entry(b"image_captioning", caption=b"a" * (2 * 1024 * 1024)),
        "caption",
    ),
    (
        "2 MB str field",
        decode_face_recognition,
        {
            k.decode(): v.decode()
            for k, v in {**RECOGNITION_ENTRY, b"matchedUsername": TWO_MB}.items()
        },
        "matchedUsername",
    ),
    ("invalid UTF-8", decode_insight, {**MODERATION_ENTRY, b"postId": b"\xff17"}, "postId"),
    (
        "invalid UTF-8 caption",
        decode_insight,
        insight_entry(b"image_captioning", caption=b"caf\xe9"),
        "caption",
    ),
    ("not bytes nor str", decode_insight, {**MODERATION_ENTRY, b"mediaId": 42}, "mediaId"),
]


@pytest.mark.parametrize(
    ("decode", "entry", "field"),
    [pytest.param(decode, entry, field, id=case) for case, decode, entry, field in POISON],
)
def test_poison_entries_raise_decode_error_naming_the_field(
    decode: Decoder, entry: Any, field: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(entry)
    error = caught.value
    assert error.field == field
    assert str(error) == f"{field}: {error.reason}"
    assert error.reason
    assert len(str(error)) < 1000  # quotes of bad values are truncated
    assert isinstance(error, ValueError)
    assert isinstance(error, KaleidoError)


def test_error_messages_say_what_is_wrong() -> None:
    with pytest.raises(
        DecodeError, match=r"^mediaId: expected a positive 64-bit integer, got 'abc'$"
    ):
        decode_insight({**MODERATION_ENTRY, b"mediaId": b"abc"})
    with pytest.raises(DecodeError, match=r"^postId: missing$"):
        decode_insight(without(MODERATION_ENTRY, b"postId"))
    with pytest.raises(DecodeError, match=r"over the 1048576-byte limit"):
        decode_insight({**MODERATION_ENTRY, b"mediaId": TWO_MB})
    with pytest.raises(DecodeError, match=r"^faces: face 1 bbox: expected a list of 4 integers"):
        decode_face_detection(
            faces_entry([face(), face(faceId=FACE_UID.replace("8", "9"), bbox=[1, 2])])
        )


def test_a_face_reports_all_its_bad_fields() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_face_detection(faces_entry([{"faceId": "x", "bbox": [1], "confidence": 2}]))
    reason = caught.value.reason
    for wire_name in ("faceId", "bbox", "embedding: missing", "confidence"):
        assert wire_name in reason


def test_decode_error_pickles_like_its_arguments() -> None:
    error = DecodeError("postId", "missing")
    assert error.args == ("postId", "missing")


# --------------------------------------------------------------------------- DLQ text


def test_decode_text_fields_never_raises() -> None:
    mixed: dict[bytes | str, bytes | str] = {b"a\xff": b"caf\xe9", b"ok": b"fine", "s": "t"}
    assert decode_text_fields(mixed) == {
        "a\\xff": "caf\\xe9",
        "ok": "fine",
        "s": "t",
    }
    assert decode_text_fields(MODERATION_ENTRY)["service"] == "moderation"


@given(st.dictionaries(st.binary(max_size=16), st.binary(max_size=64)))
def test_decode_text_fields_total(fields: Raw) -> None:
    text = decode_text_fields(fields)
    assert len(text) == len(fields)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in text.items())


# --------------------------------------------------------------------------- outbound


def test_post_media_event_fields() -> None:
    event = PostMediaEvent(17, 42, "https://cdn.example/x.jpg", 7, "c-1", STAMP)
    assert encode_post_media(event) == {
        "postId": "17",
        "mediaId": "42",
        "mediaUrl": "https://cdn.example/x.jpg",
        "imageUrl": "https://cdn.example/x.jpg",
        "uploaderId": "7",
        "timestamp": "2026-05-04T10:15:30.123456Z",
        "correlationId": "c-1",
    }


def test_profile_picture_event_fields() -> None:
    event = ProfilePictureEvent(
        7, "https://cdn.example/me.png", "c-2", STAMP.replace(microsecond=0)
    )
    assert encode_profile_picture(event) == {
        "userId": "7",
        "imageUrl": "https://cdn.example/me.png",
        "correlationId": "c-2",
        "timestamp": "2026-05-04T10:15:30.000000Z",
    }


def test_utc_timestamp() -> None:
    assert utc_timestamp(STAMP) == "2026-05-04T10:15:30.123456Z"
    plus_two = STAMP.astimezone(timezone(timedelta(hours=2)))
    assert utc_timestamp(plus_two) == "2026-05-04T10:15:30.123456Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", utc_timestamp())
    with pytest.raises(ValueError, match="naive"):
        utc_timestamp(datetime(2026, 5, 4))


def test_events_default_to_now() -> None:
    before = datetime.now(UTC)
    event = ProfilePictureEvent(7, "https://x/y.png", "c-1")
    assert before <= event.timestamp <= datetime.now(UTC)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PostMediaEvent(0, 42, "u", 7, "c"),
        lambda: PostMediaEvent(17, 2**63, "u", 7, "c"),
        lambda: PostMediaEvent(17, 42, "", 7, "c"),
        lambda: PostMediaEvent(17, 42, "u", 7, ""),
        lambda: PostMediaEvent(17, 42, "u", True, "c"),
        lambda: PostMediaEvent(17, 42, "u", 7, "c", datetime(2026, 5, 4)),
        lambda: ProfilePictureEvent(-1, "u", "c"),
    ],
)
def test_outbound_events_reject_bad_values(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


def test_stream_names() -> None:
    assert (POST_IMAGE_STREAM, POST_UPDATE_STREAM, PROFILE_PICTURE_STREAM) == (
        "post-image-processing",
        "post-update-processing",
        "profile-picture-processing",
    )
    assert dict(CONSUMER_NAMES) == {
        "ml-insights-results": "media-ai-consumer",
        "face-detection-results": "face-detection-consumer",
        "face-recognition-results": "face-recognition-consumer",
        "user-profile-face-embedding-results": "profile-face-consumer",
        "post-insights-enriched": "post-insights-consumer",
    }
    assert dlq_stream(INSIGHTS_STREAM) == "ml-insights-results:dlq"
    assert CONSUMER_GROUP == "backend-group"


# --------------------------------------------------------------------------- round trips

ids = st.integers(min_value=1, max_value=2**63 - 1)
floats32 = st.floats(allow_nan=False, allow_infinity=False, width=32)
probabilities = st.floats(min_value=0.0, max_value=1.0)
pixels = st.integers(min_value=-(2**31), max_value=2**31 - 1)
stamps = st.none() | st.datetimes(timezones=st.just(UTC))
aware_stamps = st.datetimes(timezones=st.just(UTC))
texts = st.text()
non_empty = st.text(min_size=1)
# Within the caps of an inbound entry (kaleido.messages).
labels = st.lists(st.text(max_size=MAX_TAG_CHARS), max_size=MAX_TAGS).map(tuple)
# Ids Kaleido keeps: the header's rule, and text the ML service's JSON decoding leaves text.
usable_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True).filter(
    lambda cid: usable_correlation_id(cid) == cid
)
correlation_ids = st.just("") | usable_ids

payloads = st.one_of(
    st.builds(Moderation, is_safe=st.booleans(), confidence=st.none() | probabilities),
    st.builds(Tagging, tags=labels),
    st.builds(SceneRecognition, scenes=labels),
    st.builds(ImageCaptioning, caption=st.text(max_size=MAX_CAPTION_CHARS)),
    st.builds(ImageEmbedding, embedding=st.lists(floats32, min_size=1, max_size=64).map(tuple)),
)
insights = st.builds(
    InsightResult,
    media_id=ids,
    post_id=ids,
    payload=payloads,
    correlation_id=correlation_ids,
    timestamp=stamps,
    version=st.none() | texts,
)
detected_faces = st.builds(
    DetectedFace,
    face_id=st.uuids().map(str),
    bbox=st.tuples(pixels, pixels, pixels, pixels),
    # None, or exactly ROUND_TRIP_DIM floats (what the decoder is told to expect).
    embedding=st.just(()) | st.lists(floats32, min_size=4, max_size=4).map(tuple),
    confidence=probabilities,
)
detections = st.builds(
    FaceDetectionResult,
    media_id=ids,
    post_id=ids,
    faces_detected=st.integers(min_value=0, max_value=2**63 - 1),
    faces=st.lists(detected_faces, max_size=4, unique_by=lambda f: f.face_id).map(tuple),
    correlation_id=correlation_ids,
    timestamp=stamps,
    version=st.none() | texts,
)
recognitions = st.builds(
    FaceRecognitionResult,
    media_id=ids,
    post_id=ids,
    face_id=st.uuids().map(str),
    suggested_user_id=ids,
    confidence=probabilities,
    matched_username=st.none() | st.text(max_size=MAX_USERNAME_CHARS),
    correlation_id=correlation_ids,
    timestamp=stamps,
    version=st.none() | texts,
)


@given(insights)
def test_insight_round_trip(result: InsightResult) -> None:
    fields = encode_insight(result)
    assert all(isinstance(v, str) for v in fields.values())
    dim = len(result.payload.embedding) if isinstance(result.payload, ImageEmbedding) else 1408
    assert decode_insight(as_redis(fields), embedding_dim=dim) == result
    assert decode_insight(fields, embedding_dim=dim) == result


@given(detections)
def test_face_detection_round_trip(result: FaceDetectionResult) -> None:
    entry = as_redis(encode_face_detection(result))
    assert decode_face_detection(entry, embedding_dim=4) == result


@given(recognitions)
def test_face_recognition_round_trip(result: FaceRecognitionResult) -> None:
    assert decode_face_recognition(as_redis(encode_face_recognition(result))) == result


@given(st.builds(PostMediaEvent, ids, ids, non_empty, ids, usable_ids, aware_stamps))
def test_post_media_round_trip(event: PostMediaEvent) -> None:
    assert decode_post_media(as_redis(encode_post_media(event))) == event


@given(st.builds(ProfilePictureEvent, ids, non_empty, usable_ids, aware_stamps))
def test_profile_picture_round_trip(event: ProfilePictureEvent) -> None:
    assert decode_profile_picture(as_redis(encode_profile_picture(event))) == event


# --------------------------------------------------------------------------- fuzzing

KNOWN_FIELDS = [
    "mediaId", "postId", "service", "correlationId", "timestamp", "version", "isSafe",
    "moderationConfidence", "tags", "scenes", "caption", "imageEmbedding", "facesDetected",
    "faces", "faceId", "suggestedUserId", "matchedUsername", "confidenceScore",
]  # fmt: skip
SPECIAL_VALUES = [
    *(service.encode() for service in sorted(INSIGHT_SERVICES)),
    b"", b" ", b"0", b"1", b"-1", b"true", b"NaN", b"inf", b"-0", b"1e999", b"[]", b"[1,2,3,4]",
    b"[NaN]", b"9223372036854775807", b"9223372036854775808", FACE_UID.encode(), b"\xff",
    b"2026-05-04T10:15:30Z", b"0001-01-01T00:00:00+05:00", b"9999-12-31T23:59:59-05:00",
    b'[{"faceId": 1}]', b"[" * 3000, FACES_JSON.encode(),
]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
raw_values = st.one_of(
    st.binary(max_size=48),
    st.sampled_from(SPECIAL_VALUES),
    st.integers().map(lambda i: str(i).encode()),
    st.floats().map(lambda f: repr(f).encode()),
    st.text(max_size=24).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
)
raw_entries = st.dictionaries(
    st.sampled_from(KNOWN_FIELDS).map(str.encode) | st.binary(max_size=8), raw_values
)
all_decoders = st.sampled_from(
    [
        decode_insight,
        decode_face_detection,
        decode_face_recognition,
        decode_post_media,
        decode_profile_picture,
    ]
)


def assert_only_decode_error(decode: Decoder, entry: Any) -> None:
    """Anything but a DecodeError escapes and fails the test."""
    with contextlib.suppress(DecodeError):
        decode(entry)


@settings(max_examples=500)
@given(all_decoders, raw_entries)
def test_decoders_raise_nothing_but_decode_error(decode: Decoder, entry: Raw) -> None:
    assert_only_decode_error(decode, entry)


@settings(max_examples=300)
@given(all_decoders, st.dictionaries(st.binary(max_size=24), st.binary(max_size=64)))
def test_decoders_on_arbitrary_bytes(decode: Decoder, entry: Raw) -> None:
    assert_only_decode_error(decode, entry)


face_like = st.fixed_dictionaries(
    {},
    optional={
        "faceId": st.uuids().map(str) | json_values,
        "bbox": st.lists(st.integers() | st.floats(), max_size=5) | json_values,
        "embedding": st.lists(st.floats(), max_size=4) | json_values,
        "confidence": st.floats() | st.text(max_size=6) | json_values,
    },
)


@settings(max_examples=300)
@given(st.lists(face_like | json_values, max_size=4))
def test_face_list_fuzz(faces: list[Any]) -> None:
    entry = {**DETECTION_ENTRY, b"faces": json.dumps(faces).encode()}
    assert_only_decode_error(decode_face_detection, entry)


@given(st.builds(Moderation, st.booleans(), probabilities))
def test_payload_classes_are_frozen(payload: Moderation) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        payload.is_safe = not payload.is_safe  # type: ignore[misc]


# --------------------------------------------------------------------------- caps


def _vector(n: int) -> bytes:
    return json.dumps([0.25] * n).encode()


@pytest.mark.parametrize(
    ("entry", "field", "reason"),
    [
        (insight_entry(b"image_embedding", imageEmbedding=_vector(1407)), "imageEmbedding",
         "1407 floats, expected exactly 1408"),
        (insight_entry(b"image_embedding", imageEmbedding=_vector(3)), "imageEmbedding",
         "3 floats, expected exactly 1408"),
        (insight_entry(b"tagging", tags=json.dumps(["t"] * 300).encode()), "tags",
         "300 items, over the limit of 256"),
        (insight_entry(b"tagging", tags=json.dumps(["x" * 300]).encode()), "tags",
         "item 0: 300 characters"),
        (insight_entry(b"image_captioning", caption=b"c" * 5000), "caption",
         "5000 characters, over the 4096-character limit"),
        ({**insight_entry(b"tagging", tags=b"[]"), b"junk": b"j" * 1_000_000,
          b"more": b"m" * 1_000_000, b"again": b"a" * 200_000}, "entry",
         "over the 2097152-byte limit"),
    ],
)  # fmt: skip
def test_insight_caps(entry: Raw, field: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_insight(entry)
    assert caught.value.field == field and reason in str(caught.value)


def test_face_caps() -> None:
    many = [face(faceId=str(uuid.UUID(int=i))) for i in range(33)]
    with pytest.raises(DecodeError, match="33 faces, over the limit of 32"):
        decode_face_detection(faces_entry(many))
    for size in (1409, 1407):
        with pytest.raises(DecodeError, match=f"face 0 embedding: {size} floats, expected exa"):
            decode_face_detection(faces_entry([face(embedding=[0.5] * size)]))
    recognition = {b"mediaId": b"1", b"postId": b"2", b"faceId": str(uuid.UUID(int=1)).encode(),
                   b"suggestedUserId": b"3"}  # fmt: skip
    for confidence in (b"-1e30", b"1.5"):
        with pytest.raises(DecodeError, match="confidenceScore: expected a number between 0"):
            decode_face_recognition({**recognition, b"confidenceScore": confidence})
    long_name = {**recognition, b"confidenceScore": b"0.5", b"matchedUsername": b"u" * 500_000}
    with pytest.raises(DecodeError, match="matchedUsername: 500000 characters"):
        decode_face_recognition(long_name)


def test_a_correlation_id_outside_the_header_rule_is_dropped() -> None:
    entry = {**insight_entry(b"tagging", tags=b"[]"), b"correlationId": b"x" * 900_000}
    result = decode_insight(entry)
    assert isinstance(result, InsightResult) and result.correlation_id == ""
    ok = {**insight_entry(b"tagging", tags=b"[]"), b"correlationId": b"c-1"}
    assert decode_insight(ok).correlation_id == "c-1"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the converter


def test_the_converter_writes_each_message_as_its_encoder() -> None:
    cases: list[tuple[Any, Callable[[Any], dict[str, str]]]] = [
        (decode_insight(MODERATION_ENTRY), encode_insight),
        (decode_face_detection(DETECTION_ENTRY), encode_face_detection),
        (decode_face_recognition(RECOGNITION_ENTRY), encode_face_recognition),
    ]
    for message, encode in cases:
        assert converter.unstructure(message) == encode(message)


def test_the_first_bad_field_in_wire_order_is_named() -> None:
    bad = {**RECOGNITION_ENTRY, b"postId": b"x", b"confidenceScore": b"2", b"faceId": b"y"}
    with pytest.raises(DecodeError) as caught:
        decode_face_recognition(bad)
    assert str(caught.value) == "postId: expected a positive 64-bit integer, got 'x'"
    with pytest.raises(DecodeError) as caught:
        decode_face_recognition(without(bad, b"postId"))
    assert str(caught.value) == "postId: missing"


def test_a_payload_error_comes_before_the_ids() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_insight({**MODERATION_ENTRY, b"mediaId": b"x", b"isSafe": b"maybe"})
    assert caught.value.field == "isSafe"
