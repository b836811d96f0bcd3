"""The demo's stand-in ML service (against real Redis) and simulated traffic."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
from attrs import AttrsInstance

from kaleido.app import Running, _serve, service_of
from kaleido.demo.aggregator import aggregate
from kaleido.demo.answers import answers, spoils
from kaleido.demo.faces import KnownFace, KnownFaces, face_id, seen_face, user_face
from kaleido.demo.ml_standin import GROUP, MlStandin
from kaleido.demo.traffic import Traffic
from kaleido.gateways import Backends
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INSIGHT_SERVICES,
    INSIGHTS_STREAM,
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_FACE_STREAM,
    AggregationTrigger,
    DecodeError,
    FaceDetectionResult,
    FaceRecognitionResult,
    InsightResult,
    MediaServiceResult,
    PostMediaEvent,
    ProfilePictureEvent,
    decode_inbound,
    decode_profile_face,
    encode_post_media,
    encode_profile_picture,
)
from kaleido.posts import Posts
from kaleido.profiles import Profiles
from kaleido.settings import Settings

from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")

Decoded = InsightResult | FaceDetectionResult | FaceRecognitionResult


async def publish(backends: Backends, stream: str, fields: dict[str, str]) -> None:
    """An outbound entry, as the outbox relay publishes it."""
    flat = [part for pair in fields.items() for part in pair]
    await backends.redis.execute("XADD", backends.keys.stream(stream), "*", *flat)


async def publish_media(backends: Backends, stream: str, events: list[PostMediaEvent]) -> None:
    for sent in events:
        await publish(backends, stream, encode_post_media(sent))


@pytest.fixture
async def standin(backends: Backends) -> AsyncIterator[MlStandin]:
    actor = MlStandin(backends.redis, backends.keys, trio.Event(), malformed_rate=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor
        actor.stopping.set()


async def inbound(backends: Backends, stream: str) -> list[Decoded]:
    out: list[Decoded] = []
    for _, fields in await backends.redis.execute("XRANGE", stream, "-", "+"):
        message = decode_inbound(stream, fields)
        assert isinstance(message, InsightResult | FaceDetectionResult | FaceRecognitionResult)
        out.append(message)
    return out


def _xlen_at_least(backends: Backends, stream: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return int(await backends.redis.execute("XLEN", stream)) >= count

    return check


def event(post_id: int, media_id: int, correlation_id: str) -> PostMediaEvent:
    return PostMediaEvent(post_id, media_id, f"https://img.example/{media_id}", 9, correlation_id)


def comparable(message: AttrsInstance) -> dict[str, Any]:
    """The parts of an answer that depend on the ids only."""
    fields = attrs.asdict(message, recurse=False)
    fields.update(correlation_id="", timestamp=None)
    return {"type": type(message).__name__, **fields}


async def test_standin_answers_in_the_real_wire_format(
    backends: Backends, standin: MlStandin
) -> None:
    events = [event(17, 100 + i, f"c-{i}") for i in range(4)]
    await publish_media(backends, POST_IMAGE_STREAM, events)
    await publish(backends, "profile-picture-processing", encode_profile_picture(
        ProfilePictureEvent(5, "https://img.example/me", "c-pp")))  # fmt: skip
    await wait_until(_xlen_at_least(backends, INSIGHTS_STREAM, 5 * len(events)))
    await wait_until(_xlen_at_least(backends, FACE_DETECTION_STREAM, len(events)))

    insights = await inbound(backends, INSIGHTS_STREAM)
    detections = await inbound(backends, FACE_DETECTION_STREAM)
    recognitions = await inbound(backends, FACE_RECOGNITION_STREAM)
    for sent in events:
        mine = [m for m in insights if m.media_id == sent.media_id]
        assert {m.service for m in mine if isinstance(m, InsightResult)} == INSIGHT_SERVICES
        (detection,) = [d for d in detections if d.media_id == sent.media_id]
        assert isinstance(detection, FaceDetectionResult)
        assert detection.faces_detected == len(detection.faces) <= 3
        for index, face in enumerate(detection.faces):
            assert face.face_id == face_id(sent.media_id, index)
            assert uuid.UUID(face.face_id).version == 5
        for answer in [*mine, detection]:
            assert answer.post_id == 17 and answer.correlation_id == sent.correlation_id
            assert answer.version == "1" and answer.timestamp is not None
        embedding = next(
            m for m in mine if isinstance(m, InsightResult) and m.service == "image_embedding"
        )
        assert len(embedding.payload.embedding) == 1408  # type: ignore[union-attr]
    assert recognitions == []  # nobody is enrolled: the matcher knows no face
    # The answers are exactly what the pure function says (timestamps aside).
    expected = [answer for sent in events for answer in answers(sent)]
    assert sorted(map(repr, map(comparable, [*insights, *detections]))) == sorted(
        repr(comparable(decode_inbound(stream, fields))) for stream, fields in expected
    )

    async def all_acknowledged() -> bool:
        for stream in (POST_IMAGE_STREAM, "profile-picture-processing"):
            summary = await backends.redis.execute("XPENDING", stream, GROUP)
            if summary[0] if isinstance(summary, list | tuple) else summary["pending"]:
                return False
        return standin.stats.profile_pictures == 1

    await wait_until(all_acknowledged)
    # The enrolment worker answered the profile picture with the user's face.
    ((_, fields),) = await backends.redis.execute("XRANGE", PROFILE_FACE_STREAM, "-", "+")
    profile_face = decode_profile_face(fields)
    assert (profile_face.user_id, profile_face.correlation_id) == (5, "c-pp")
    assert profile_face.embedding == user_face(5, 1408) and profile_face.usable


async def test_same_ids_give_the_same_answers_and_updates_go_unread(
    backends: Backends, standin: MlStandin
) -> None:
    await publish_media(backends, POST_IMAGE_STREAM, [event(1, 42, "first")])
    await publish_media(backends, POST_UPDATE_STREAM, [event(1, 42, "ignored")])
    await publish_media(backends, POST_IMAGE_STREAM, [event(1, 42, "second")])
    await wait_until(_xlen_at_least(backends, INSIGHTS_STREAM, 10))
    insights = await inbound(backends, INSIGHTS_STREAM)
    first = [comparable(m) for m in insights if m.correlation_id == "first"]
    second = [comparable(m) for m in insights if m.correlation_id == "second"]
    assert len(first) == 5 and first == second
    # Like the real service, nothing reads post-update-processing.
    assert not [m for m in insights if m.correlation_id == "ignored"]
    # Different media, different answers.
    assert answers(event(1, 43, "x"))[1][1] != answers(event(1, 42, "x"))[1][1]


def test_a_face_of_an_enrolled_user_is_matched_and_a_stranger_is_not() -> None:
    rng = random.Random(3)
    known = KnownFaces({"user-7": KnownFace(7, "alice", user_face(7, 64), True),
                        "user-8": KnownFace(8, "bob", user_face(8, 64), False)})  # fmt: skip
    match = known.best_match(seen_face(7, 64, rng))
    assert match is not None and (match.user_id, match.username) == (7, "alice")
    assert match.score >= 0.85
    assert known.best_match(seen_face(8, 64, rng)) is None  # not active
    assert known.best_match(user_face(9, 64)) is None  # a stranger
    assert not any(user_face(13, 64))  # a picture without a usable face


def test_the_aggregator_reads_only_the_trigger() -> None:
    trigger = AggregationTrigger(
        5,
        (1, 2),
        (
            MediaServiceResult(1, "moderation", is_safe=True, moderation_confidence=0.9),
            MediaServiceResult(1, "tagging", tags=("dog", "park")),
            MediaServiceResult(1, "image_captioning", caption="a dog"),
            MediaServiceResult(2, "moderation", is_safe=False, moderation_confidence=0.7),
            MediaServiceResult(2, "tagging", tags=("dog",)),
            MediaServiceResult(2, "scene_recognition", scenes=("park",)),
            MediaServiceResult(2, "face", faces_detected=2),
        ),
        "c-agg",
    )
    result = aggregate(trigger)
    assert (result.post_id, result.media_count, result.has_multiple_images) == (5, 2, True)
    assert result.aggregated_tags == ("dog", "park") and result.total_faces == 2
    assert (result.is_safe, result.moderation_confidence) == (False, 0.7)
    assert result.combined_caption == "a dog" and result.correlation_id == "c-agg"


def test_a_small_share_of_answers_is_malformed() -> None:
    spoiled = [media_id for media_id in range(1, 5001) if spoils(media_id)]
    assert 0.01 * 5000 <= len(spoiled) <= 0.03 * 5000
    kinds = set()
    for media_id in [*spoiled[:20], *range(1, 31)]:
        failures = []
        for stream, fields in answers(event(1, media_id, "c")):
            try:
                decode_inbound(stream, fields)
            except DecodeError as exc:
                failures.append(exc.field)
        # Exactly one bad entry for a spoiled media, none otherwise.
        assert len(failures) == (1 if media_id in spoiled else 0)
        kinds.update(failures)
    assert kinds == {"mediaId", "faces"}
    # Every media spoiled when asked to: the DLQ path can be exercised on purpose.
    assert all(spoils(media_id, 1.0) and not spoils(media_id, 0.0) for media_id in range(1, 50))


async def test_standin_survives_a_flushed_redis(backends: Backends, standin: MlStandin) -> None:
    await publish_media(backends, POST_IMAGE_STREAM, [event(1, 1, "a")])
    await wait_until(_xlen_at_least(backends, INSIGHTS_STREAM, 5))
    await backends.redis.execute("FLUSHALL")  # the group is gone with its stream
    await publish_media(backends, POST_IMAGE_STREAM, [event(1, 2, "b")])
    await wait_until(_xlen_at_least(backends, INSIGHTS_STREAM, 5))
    assert {m.media_id for m in await inbound(backends, INSIGHTS_STREAM)} == {2}


async def test_traffic_creates_posts_views_edits_and_avatars(backends: Backends) -> None:
    recorded: list[tuple[int, int]] = []

    class Recorder:
        def record(self, user_id: int, post_id: int) -> bool:
            recorded.append((user_id, post_id))
            return True

    traffic = Traffic(
        Posts(backends.postgres),
        Profiles(backends.postgres),
        Recorder(),
        trio.Event(),
        seed=7,
        views_per_second=200,
        post_every=0.02,
        media_edit_every=0.05,
        profile_picture_every=0.05,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(traffic.run)

        async def busy() -> bool:
            s = traffic.stats
            return (
                # Enough posts and views for popularity to show (with 4 posts an even share
                # is 25%, close to the most popular post's own share of about 45%).
                s.posts >= 10
                and s.media_edits >= 2
                and s.profile_pictures >= 2
                and len(recorded) >= 300
            )

        await wait_until(busy)
        traffic.stopping.set()
    assert traffic.stats.failures == 0
    stored = await backends.postgres.fetchval("SELECT count(*) FROM posts")
    assert stored == traffic.stats.posts
    assert {post for _, post in recorded} <= set(
        await backends.postgres.fetchval("SELECT array_agg(post_id) FROM posts")
    )
    for stream, least in [
        (POST_IMAGE_STREAM, traffic.stats.posts),
        (POST_UPDATE_STREAM, traffic.stats.media_edits),
        ("profile-picture-processing", traffic.stats.profile_pictures),
    ]:  # announced (no relay runs here: the rows wait in the outbox)
        count = await backends.postgres.fetchval(
            "SELECT count(*) FROM outbox WHERE stream = $1", stream
        )
        assert count >= least
    usernames = await backends.postgres.fetchval(
        "SELECT count(*) FROM profile_picture_requests WHERE username IS NOT NULL"
    )
    assert usernames >= 1
    # Zipf-ish: the most viewed post gets far more than an even share.
    counts: dict[int, int] = {}
    for _, post in recorded:
        counts[post] = counts.get(post, 0) + 1
    assert max(counts.values()) > 2 * len(recorded) / len(counts)


async def test_serve_with_demo_fills_the_streams(settings: Settings, backends: Backends) -> None:
    # `backends` has reset both servers: no reset once the demo writes (TRUNCATE would race it).
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: _serve(settings, demo=True, task_status=task_status)
        )
        actors = service_of(running).supervisor.actors
        assert actors["demo-ml-standin"].running and actors["demo-traffic"].running
        # A post every ~2 s, answered by the stand-in: every stream moves and every table fills.
        await wait_until(_xlen_at_least(backends, FACE_DETECTION_STREAM, 1), timeout=20)
        await wait_until(_xlen_at_least(backends, INSIGHTS_STREAM, 5), timeout=20)
        tables = (
            "posts", "post_media", "media_ai_insights", "media_detected_faces",
            "profile_picture_requests", "user_face_embeddings", "read_model_known_faces",
            "read_model_face_search", "read_model_recommendations_knn",
            "read_model_feed_personalized", "post_aggregations", "post_insights",
        )  # fmt: skip

        async def every_table_filled() -> bool:
            for table in tables:
                if not await backends.postgres.fetchval(f"SELECT count(*) FROM {table}"):
                    return False
            return bool(
                await backends.postgres.fetchval(
                    "SELECT count(*) FROM media_detected_faces WHERE suggested_user_id IS NOT NULL"
                )
            )

        await wait_until(every_table_filled, timeout=90)
        running.stop()
