"""The inbound streams' effects (docs/CONTRACT.md sections 2 and 3), with real Redis and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import pytest

from kaleido.gateways import Backends
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    FACE_RECOGNITION_STREAM,
    INSIGHTS_STREAM,
)
from kaleido.posts import MediaItem, replace_media

from .streams_helpers import (
    create_post,
    dlq_len,
    face,
    insight,
    pending_count,
    post_status,
    processed,
    running,
    xadd,
)
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")

UID = "8d0f3a52-6c1e-4b7a-9f3e-2a1b0c9d8e7f"
UID2 = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
# A face embedding of the ML service's size (FACE_EMBEDDING_DIM floats).
FACE = [0.01, -0.5, 0.25] + [0.0] * (FACE_EMBEDDING_DIM - 3)


def _b(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


MODERATION = _b(
    {
        "mediaId": "42",
        "postId": "17",
        "service": "moderation",
        "isSafe": "false",
        "moderationConfidence": "0.97",
        "correlationId": "c-1",
        "timestamp": "2026-05-04T10:15:30.123456Z",
        "version": "1",
    }
)
DETECTION = _b(
    {
        "mediaId": "42",
        "postId": "17",
        "facesDetected": "1",
        "faces": json.dumps(
            [
                {
                    "faceId": UID,
                    "bbox": [120, 80, 260, 240],
                    "embedding": FACE,
                    "confidence": 0.9731,
                }
            ]
        ),
        "correlationId": "c-1",
        "timestamp": "2026-05-04T10:15:31Z",
        "version": "1",
    }
)
RECOGNITION = _b(
    {
        "mediaId": "42",
        "postId": "17",
        "faceId": UID,
        "suggestedUserId": "7",
        "matchedUsername": "alice",
        "confidenceScore": "0.8734",
        "correlationId": "c-1",
    }
)


async def _drained(backends: Backends, stream: str, entries: int) -> None:
    async def done() -> bool:
        return await processed(backends, stream) >= entries and not await pending_count(
            backends, stream
        )

    await wait_until(done)


async def test_contract_examples_are_applied(backends: Backends) -> None:
    await create_post(backends, 17, media=(42,))
    async with running(backends) as consumers:
        await xadd(backends, INSIGHTS_STREAM, MODERATION)
        await xadd(backends, FACE_DETECTION_STREAM, DETECTION)
        await xadd(backends, FACE_RECOGNITION_STREAM, RECOGNITION)
        for stream in (INSIGHTS_STREAM, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM):
            await _drained(backends, stream, 1)
    row = await insight(backends, 42)
    assert row is not None
    assert row["post_id"] == 17
    assert row["status"] == "UNSAFE"
    assert row["is_safe"] is False
    assert row["moderation_confidence"] == pytest.approx(0.97)
    assert row["services_completed"] == ["moderation"]
    assert row["correlation_id"] == "c-1"
    assert await post_status(backends, 17) == "FLAGGED"
    f = await face(backends, 42, UID)
    assert f is not None
    assert f["post_id"] == 17
    assert f["bbox"] == [120, 80, 260, 240]
    assert f["confidence_score"] == pytest.approx(0.9731)
    assert f["embedding"] == pytest.approx(FACE)
    assert f["status"] == "SUGGESTED"
    assert f["suggested_user_id"] == 7
    assert f["suggestion_confidence"] == pytest.approx(0.8734)
    assert f["matched_username"] == "alice"
    assert all(c.stats.applied == 1 for c in consumers.values())
    assert all(c.stats.dead_lettered == 0 for c in consumers.values())


async def test_all_five_services_merge_into_one_row(backends: Backends) -> None:
    embedding = [round(i * 0.001, 3) for i in range(1408)]
    base = {"mediaId": "5", "postId": "50", "correlationId": "c-5", "unknownExtra": "x" * 5000}
    entries: list[dict[str, str]] = [
        {"service": "moderation", "isSafe": "true", "moderationConfidence": "0.12"},
        {"service": "tagging", "tags": json.dumps(["beach", "sunset"])},
        {"service": "scene_recognition", "scenes": "outdoor, coast"},  # comma-separated form
        {"service": "image_captioning", "caption": "A beach at sunset, «golden»"},
        {"service": "image_embedding", "imageEmbedding": json.dumps(embedding)},
        {"service": "tagging", "tags": json.dumps(["beach", "sea"])},  # a later result wins
    ]
    async with running(backends, INSIGHTS_STREAM) as consumers:
        for extra in entries:
            await xadd(backends, INSIGHTS_STREAM, _b({**base, **extra}))
        await _drained(backends, INSIGHTS_STREAM, len(entries))
    row = await insight(backends, 5)
    assert row is not None
    assert row["status"] == "COMPLETED"
    assert row["is_safe"] is True
    assert row["moderation_confidence"] == pytest.approx(0.12)
    assert row["tags"] == ["beach", "sea"]
    assert row["scenes"] == ["outdoor", "coast"]
    assert row["caption"] == "A beach at sunset, «golden»"
    assert row["image_embedding"] == pytest.approx(embedding, abs=1e-6)
    # Sorted: whatever order the results were applied in.
    assert row["services_completed"] == [
        "image_captioning",
        "image_embedding",
        "moderation",
        "scene_recognition",
        "tagging",
    ]
    assert consumers[INSIGHTS_STREAM].stats.applied == len(entries)


async def test_each_entry_alone_merges_the_same_way(backends: Backends) -> None:
    """Entries applied in separate batches end like one batch: same merge rules in SQL."""
    async with running(backends, INSIGHTS_STREAM, batch_size=1):
        for extra in (
            {"service": "tagging", "tags": '["a"]'},
            {"service": "image_captioning", "caption": "first"},
            {"service": "tagging", "tags": '["b", "c"]'},
            {"service": "moderation", "isSafe": "true"},
        ):
            await xadd(backends, INSIGHTS_STREAM, _b({"mediaId": "6", "postId": "60", **extra}))
        await _drained(backends, INSIGHTS_STREAM, 4)
    row = await insight(backends, 6)
    assert row is not None
    assert (row["tags"], row["caption"], row["is_safe"]) == (["b", "c"], "first", True)
    assert row["services_completed"] == ["image_captioning", "moderation", "tagging"]
    assert row["status"] == "COMPLETED"


@pytest.mark.parametrize("batch_size", [1, 100])
async def test_unsafe_is_sticky_and_a_post_is_never_unflagged(
    backends: Backends, batch_size: int
) -> None:
    await create_post(backends, 70, media=(7,))
    verdicts = [("true", "0.1"), ("false", "0.9"), ("true", "0.2")]
    async with running(backends, INSIGHTS_STREAM, batch_size=batch_size):
        for safe, confidence in verdicts:
            fields = {"mediaId": "7", "postId": "70", "service": "moderation", "isSafe": safe}
            await xadd(
                backends, INSIGHTS_STREAM, _b({**fields, "moderationConfidence": confidence})
            )
        await _drained(backends, INSIGHTS_STREAM, 3)
    row = await insight(backends, 7)
    assert row is not None
    assert (row["status"], row["is_safe"]) == ("UNSAFE", False)
    assert row["moderation_confidence"] == pytest.approx(0.9)
    assert await post_status(backends, 70) == "FLAGGED"


async def test_unknown_service_is_acknowledged_and_ignored(backends: Backends) -> None:
    async with running(backends, INSIGHTS_STREAM) as consumers:
        await xadd(backends, INSIGHTS_STREAM, _b({"service": "aesthetics", "score": "9"}))
        await xadd(backends, INSIGHTS_STREAM, MODERATION)
        await _drained(backends, INSIGHTS_STREAM, 1)
        await wait_until(lambda: _zero(pending_count(backends, INSIGHTS_STREAM)))
    stats = consumers[INSIGHTS_STREAM].stats
    assert (stats.ignored, stats.applied, stats.dead_lettered) == (1, 1, 0)


async def _zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def test_results_without_post_or_media_rows_are_recorded(backends: Backends) -> None:
    """No posts row for 17: the media is still recorded UNSAFE; nothing fails."""
    async with running(backends) as consumers:
        await xadd(backends, INSIGHTS_STREAM, MODERATION)
        await xadd(backends, FACE_RECOGNITION_STREAM, RECOGNITION)
        await _drained(backends, INSIGHTS_STREAM, 1)
        await _drained(backends, FACE_RECOGNITION_STREAM, 1)
    assert (await insight(backends, 42) or {})["status"] == "UNSAFE"
    assert (await face(backends, 42, UID) or {})["status"] == "SUGGESTED"
    assert sum(c.stats.dead_lettered for c in consumers.values()) == 0


FACE_COLUMNS = (
    "media_id",
    "face_uid",
    "post_id",
    "bbox",
    "confidence_score",
    "embedding",
    "status",
    "suggested_user_id",
    "suggestion_confidence",
    "matched_username",
    "correlation_id",
)


async def _face_after(backends: Backends, order: list[tuple[str, dict[bytes, bytes]]]) -> Any:
    from .service_helpers import reset

    await reset(backends)
    async with running(backends, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM):
        for stream, fields in order:
            await xadd(backends, stream, fields)
            await _drained(backends, stream, 1)  # strictly in this order
    row = await face(backends, 42, UID)
    assert row is not None
    return {column: row[column] for column in FACE_COLUMNS}


async def test_detection_and_recognition_in_either_order_give_the_same_row(
    backends: Backends,
) -> None:
    recognition = {**RECOGNITION, b"correlationId": b"c-2", b"postId": b"17"}
    first = await _face_after(
        backends, [(FACE_DETECTION_STREAM, DETECTION), (FACE_RECOGNITION_STREAM, recognition)]
    )
    second = await _face_after(
        backends, [(FACE_RECOGNITION_STREAM, recognition), (FACE_DETECTION_STREAM, DETECTION)]
    )
    assert first == second
    assert first["status"] == "SUGGESTED" and first["bbox"] == [120, 80, 260, 240]


async def test_detection_again_keeps_the_suggestion_and_many_faces(backends: Backends) -> None:
    two_faces = json.dumps(
        [
            {
                "faceId": UID.upper(),
                "bbox": [1, 2, 3, 4],
                "embedding": [0.0] * FACE_EMBEDDING_DIM,
                "confidence": 1,
            },
            {"faceId": UID2, "bbox": [5, 6, 7, 8], "embedding": [], "confidence": 0.5},
        ]
    )
    async with running(backends, FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM):
        await xadd(backends, FACE_DETECTION_STREAM, DETECTION)
        await xadd(backends, FACE_RECOGNITION_STREAM, RECOGNITION)
        await _drained(backends, FACE_RECOGNITION_STREAM, 1)
        await _drained(backends, FACE_DETECTION_STREAM, 1)
        await xadd(backends, FACE_DETECTION_STREAM, {**DETECTION, b"faces": two_faces.encode()})
        await _drained(backends, FACE_DETECTION_STREAM, 2)
    first = await face(backends, 42, UID)
    second = await face(backends, 42, UID2)
    assert first is not None and second is not None
    assert (first["status"], first["bbox"], first["suggested_user_id"]) == (
        "SUGGESTED",
        [1, 2, 3, 4],
        7,
    )
    assert first["embedding"] == [0.0] * FACE_EMBEDDING_DIM
    assert (second["status"], second["embedding"]) == ("UNIDENTIFIED", [])


async def test_a_result_naming_another_post_is_dead_lettered_and_touches_nothing(
    backends: Backends,
) -> None:
    """An entry's postId is not trusted: post_media says which post owns the media."""
    await create_post(backends, 1, media=(99999,))
    await create_post(backends, 6000)  # someone else's post
    forged = {"mediaId": "99999", "postId": "6000", "service": "moderation", "isSafe": "false"}
    faces = {**{k.decode(): v.decode() for k, v in DETECTION.items()}, "postId": "6000",
             "mediaId": "99999"}  # fmt: skip
    good = {"mediaId": "99999", "postId": "1", "service": "tagging", "tags": '["cat"]'}
    async with running(backends):
        await xadd(backends, INSIGHTS_STREAM, _b(forged))
        await xadd(backends, FACE_DETECTION_STREAM, _b(faces))
        await xadd(backends, INSIGHTS_STREAM, _b(good))

        async def dealt_with() -> bool:
            letters = [await dlq_len(backends, s) for s in (INSIGHTS_STREAM, FACE_DETECTION_STREAM)]
            return letters == [1, 1] and not await pending_count(backends, INSIGHTS_STREAM)

        await wait_until(dealt_with)
    for stream in (INSIGHTS_STREAM, FACE_DETECTION_STREAM):
        [(_, letter)] = await backends.redis.execute("XRANGE", backends.keys.dlq(stream), "-", "+")
        assert b"media 99999 belongs to post 1, not to post 6000" in letter[b"error"]
    assert await post_status(backends, 6000) == "PUBLISHED"
    assert await post_status(backends, 1) == "PUBLISHED"
    row = await insight(backends, 99999)
    assert row is not None and row["post_id"] == 1 and row["tags"] == ["cat"]
    assert row["is_safe"] is None  # the forged verdict left no trace


async def test_an_unsafe_media_with_no_post_yet_flags_its_post_once_attached(
    backends: Backends,
) -> None:
    await create_post(backends, 6000)
    verdict = {"mediaId": "555", "postId": "6000", "service": "moderation", "isSafe": "false"}
    async with running(backends, INSIGHTS_STREAM):
        await xadd(backends, INSIGHTS_STREAM, _b(verdict))
        await _drained(backends, INSIGHTS_STREAM, 1)
    assert (await insight(backends, 555) or {}).get("status") == "UNSAFE"  # still recorded
    assert await post_status(backends, 6000) == "PUBLISHED"  # no owner proven: nothing flagged
    async with backends.postgres.transaction() as tx:
        await replace_media(tx, 6000, [MediaItem(555, "https://cdn.example.com/5")])
    assert await post_status(backends, 6000) == "FLAGGED"
