"""The whole ML pipeline against a stand-in ML service that reads and writes what the real one
does (CONTRACT 2b): media added by an edit are analysed, profile pictures lead to known faces
and face suggestions, a post's complete media set triggers one aggregation whose answer lands,
and every outbound entry reads as the ML service needs."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from kaleido.app import Running, serve, service_of
from kaleido.demo.answers import answers
from kaleido.demo.faces import cosine, user_face
from kaleido.demo.ml_standin import MlStandin
from kaleido.gateways import Backends
from kaleido.messages import (
    AGGREGATION_TRIGGER_STREAM,
    FACE_DETECTION_STREAM,
    INSIGHT_SERVICES,
    INSIGHTS_STREAM,
    OUTBOUND_STREAMS,
    POST_INSIGHTS_STREAM,
    PROFILE_FACE_STREAM,
    SEARCH_SYNC_STREAM,
    PostMediaEvent,
    decode_aggregation_trigger,
)
from kaleido.settings import Settings

from .peer_schemas import problems
from .service_helpers import reset
from .streams_helpers import dlq_len, processed, xadd
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")

REQUIRED = ("moderation", "tagging", "scene_recognition", "image_captioning")


@attrs.frozen
class Pipeline:
    running: Running
    standin: MlStandin
    http: httpx.AsyncClient

    @property
    def backends(self) -> Backends:
        return service_of(self.running).backends


@pytest.fixture
async def pipeline(settings: Settings) -> AsyncIterator[Pipeline]:
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        backends = service_of(running).backends
        await reset(backends)
        standin = MlStandin(
            backends.redis, backends.keys, trio.Event(), backends.postgres, malformed_rate=0.0
        )
        await nursery.start(standin.run)
        base = "http://" + running.http_addresses[0].split("://")[-1]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield Pipeline(running, standin, http)
        standin.stopping.set()
        running.stop()


def media(*ids: int) -> list[dict[str, Any]]:
    return [{"mediaId": i, "mediaUrl": f"https://img.example.com/{i}.jpg"} for i in ids]


async def services_of(backends: Backends, media_id: int) -> set[str]:
    done = await backends.postgres.fetchval(
        "SELECT services_completed FROM media_ai_insights WHERE media_id = $1", media_id
    )
    return set(done or ())


async def outbound(backends: Backends, stream: str) -> list[dict[str, str]]:
    reply = await backends.redis.execute("XRANGE", backends.keys.stream(stream), "-", "+")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in reply]


async def check_every_outbound_entry(backends: Backends) -> int:
    """Every outbound entry reads as the ML service needs; return how many there are."""
    seen = 0
    for stream in OUTBOUND_STREAMS:
        for fields in await outbound(backends, stream):
            assert problems(stream, fields) == [], (stream, fields)
            seen += 1
    return seen


async def test_a_media_added_by_an_edit_gets_all_five_insights(pipeline: Pipeline) -> None:
    backends, http = pipeline.backends, pipeline.http
    assert (await http.post("/v1/posts", json={"postId": 1, "userId": 5,
                                               "media": media(10)})).status_code == 201  # fmt: skip

    async def analysed(media_id: int) -> Any:
        async def check() -> bool:
            return await services_of(backends, media_id) >= INSIGHT_SERVICES

        return check

    await wait_until(await analysed(10), timeout=15)
    r = await http.put("/v1/posts/1/media", json={"media": media(10, 11)})
    assert r.status_code == 200 and r.json()["added"] == 1
    await wait_until(await analysed(11), timeout=15)
    post = (await http.get("/v1/posts/1")).json()
    assert [m["mediaId"] for m in post["media"]] == [10, 11]
    assert all(set(m["insights"]["servicesCompleted"]) >= INSIGHT_SERVICES for m in post["media"])
    assert await check_every_outbound_entry(backends) > 0


def _media_showing(user_id: int, face_dim: int) -> int:
    """A media id whose stand-in answer shows `user_id`'s face (the answers are a pure function
    of the media id and of who is enrolled)."""
    for media_id in range(1000, 2000):
        event = PostMediaEvent(99, media_id, "https://img.example.com/x.jpg", 1, "c-1")
        for stream, fields in answers(event, enrolled=[user_id], face_dim=face_dim):
            if stream != FACE_DETECTION_STREAM:
                continue
            for face in json.loads(fields["faces"]):
                if cosine(face["embedding"], user_face(user_id, face_dim)) > 0.9:
                    return media_id
    raise AssertionError("no media shows the user")


async def test_a_profile_picture_enrols_a_known_face_that_later_posts_are_matched_to(
    pipeline: Pipeline,
) -> None:
    backends, http = pipeline.backends, pipeline.http
    pg = backends.postgres
    first = await http.post("/v1/users/7/profile-picture", json={
        "imageUrl": "https://img.example.com/alice.jpg", "username": "alice",
        "department": "design"})  # fmt: skip
    assert first.status_code == 202

    async def enrolled() -> bool:
        return "user-7" in pipeline.standin.known.faces  # indexed by the stand-in's sync

    await wait_until(enrolled, timeout=15)
    row = await pg.fetchrow("SELECT * FROM read_model_known_faces WHERE face_id = 'user-7'")
    assert (row["user_id"], row["username"], row["department"], row["is_active"]) == (
        7, "alice", "design", True)  # fmt: skip
    assert row["profile_pic_url"] == "https://img.example.com/alice.jpg"
    assert len(row["face_embedding"]) == 1408
    syncs = [e for e in await outbound(backends, SEARCH_SYNC_STREAM) if e["documentId"] == "user-7"]
    assert [(e["indexType"], e["operation"]) for e in syncs] == [("known_faces_index", "index")]

    # A later post shows alice: the stand-in's face matcher finds her among the known faces.
    media_id = _media_showing(7, 1408)
    r = await http.post("/v1/posts", json={"postId": 2, "userId": 3, "media": media(media_id)})
    assert r.status_code == 201

    async def suggested() -> bool:
        return bool(await pg.fetchval(
            "SELECT count(*) FROM media_detected_faces WHERE media_id = $1"
            " AND suggested_user_id = 7 AND matched_username = 'alice'", media_id))  # fmt: skip

    await wait_until(suggested, timeout=15)
    face_search = await pg.fetch(
        "SELECT * FROM read_model_face_search WHERE media_id = $1", media_id
    )
    assert any(f["identified_user_id"] == 7 for f in face_search)

    # A second picture, then the answer to the first arriving last: stale, it changes nothing.
    second = await http.post("/v1/users/7/profile-picture", json={
        "imageUrl": "https://img.example.com/alice-2.jpg", "username": "alice"})  # fmt: skip
    second_id = second.json()["requestId"]

    async def answered() -> bool:
        return bool(
            await pg.fetchval("SELECT correlation_id FROM user_face_embeddings WHERE user_id = 7")
            == second_id
        )

    await wait_until(answered, timeout=15)
    consumer = next(
        c for c in service_of(pipeline.running).consumers if c.stream == PROFILE_FACE_STREAM
    )
    stale_before = consumer.stats.stale
    await xadd(backends, PROFILE_FACE_STREAM, {"userId": "7", "correlationId":
               first.json()["requestId"], "faceEmbedding": json.dumps([0.5] * 1408)})  # fmt: skip

    async def counted_stale() -> bool:
        return consumer.stats.stale == stale_before + 1

    await wait_until(counted_stale)
    face = await pg.fetchrow("SELECT * FROM user_face_embeddings WHERE user_id = 7")
    assert face["correlation_id"] == second_id and face["embedding"][0] != 0.5
    known = await pg.fetchrow("SELECT * FROM read_model_known_faces WHERE user_id = 7")
    assert known["profile_pic_url"] == "https://img.example.com/alice-2.jpg"
    assert await check_every_outbound_entry(backends) > 0


async def test_an_all_zero_answer_is_recorded_and_not_enrolled(pipeline: Pipeline) -> None:
    backends, http = pipeline.backends, pipeline.http
    # The stand-in answers all zeros for users whose picture shows no face (user 13).
    picture = {"imageUrl": "https://img.example.com/13.jpg"}
    assert (await http.post("/v1/users/13/profile-picture", json=picture)).status_code == 202

    async def recorded() -> bool:
        return bool(await backends.postgres.fetchval(
            "SELECT count(*) FROM user_face_embeddings WHERE user_id = 13"))  # fmt: skip

    await wait_until(recorded, timeout=15)
    row = await backends.postgres.fetchrow("SELECT * FROM user_face_embeddings WHERE user_id = 13")
    assert not row["active"] and not any(row["embedding"])
    known = await backends.postgres.fetchrow(
        "SELECT * FROM read_model_known_faces WHERE user_id = 13"
    )
    assert known is not None and not known["is_active"]  # recorded, never matched


async def test_a_complete_post_is_aggregated_once_and_its_answer_lands(pipeline: Pipeline) -> None:
    backends, http = pipeline.backends, pipeline.http
    r = await http.post("/v1/posts", json={"postId": 5, "userId": 3, "media": media(51, 52, 53)})
    assert r.status_code == 201

    async def aggregated() -> bool:
        return bool(await backends.postgres.fetchval(
            "SELECT count(*) FROM post_insights WHERE post_id = 5"))  # fmt: skip

    await wait_until(aggregated, timeout=20)
    (trigger,) = await outbound(backends, AGGREGATION_TRIGGER_STREAM)
    decoded = decode_aggregation_trigger(trigger)
    assert decoded.media_ids == (51, 52, 53)
    per_media = {(i.media_id, i.service) for i in decoded.media_insights if i.service in REQUIRED}
    assert per_media == {(m, s) for m in (51, 52, 53) for s in REQUIRED}
    post = (await http.get("/v1/posts/5")).json()
    insights = post["insights"]
    assert insights["mediaCount"] == 3 and insights["hasMultipleImages"]
    assert insights["correlationId"] == trigger["correlationId"]
    assert await check_every_outbound_entry(backends) > 0
    # The read models the ML service's search sync reads are filled, and it found every row.
    for table in ("read_model_recommendations_knn", "read_model_feed_personalized"):
        assert await backends.postgres.fetchval(f"SELECT count(*) FROM {table}") == 3
    assert pipeline.standin.stats.documents_missing == 0
    assert pipeline.standin.stats.documents_indexed >= 6


async def test_image_and_face_embedding_sizes_are_checked_apart(settings: Settings) -> None:
    settings = attrs.evolve(settings, image_embedding_dim=512)  # the HuggingFace platform
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(
            lambda task_status: serve(settings, task_status=task_status)
        )
        backends = service_of(running).backends
        await reset(backends)
        uid = "8d0f3a52-6c1e-4b7a-9f3e-2a1b0c9d8e7f"

        def embedding(media_id: int, size: int) -> dict[str, str]:
            return {"mediaId": str(media_id), "postId": "1", "service": "image_embedding",
                    "imageEmbedding": json.dumps([0.25] * size)}  # fmt: skip

        def detection(media_id: int, size: int) -> dict[str, str]:
            face = {"faceId": uid, "bbox": [1, 2, 3, 4], "embedding": [0.5] * size,
                    "confidence": 0.9}  # fmt: skip
            return {"mediaId": str(media_id), "postId": "1", "facesDetected": "1",
                    "faces": json.dumps([face])}  # fmt: skip

        await xadd(backends, INSIGHTS_STREAM, embedding(1, 512))
        await xadd(backends, INSIGHTS_STREAM, embedding(2, 1408))
        await xadd(backends, FACE_DETECTION_STREAM, detection(1, 1408))
        await xadd(backends, FACE_DETECTION_STREAM, detection(2, 512))

        async def settled() -> bool:
            return (
                await processed(backends, INSIGHTS_STREAM) == 1
                and await processed(backends, FACE_DETECTION_STREAM) == 1
                and await dlq_len(backends, INSIGHTS_STREAM) == 1
                and await dlq_len(backends, FACE_DETECTION_STREAM) == 1
            )

        await wait_until(settled)
        pg = backends.postgres
        assert (
            await pg.fetchval(
                "SELECT cardinality(image_embedding) FROM media_ai_insights WHERE media_id = 1"
            )
            == 512
        )
        assert (
            await pg.fetchval(
                "SELECT cardinality(embedding) FROM media_detected_faces WHERE media_id = 1"
            )
            == 1408
        )
        reasons = []
        for stream in (INSIGHTS_STREAM, FACE_DETECTION_STREAM):
            ((_, letter),) = await backends.redis.execute(
                "XRANGE", backends.keys.dlq(stream), "-", "+"
            )
            reasons.append(letter[b"error"].decode())
        assert reasons == [
            "imageEmbedding: 1408 floats, expected exactly 512",
            "faces: face 0 embedding: 512 floats, expected exactly 1408",
        ]
        running.stop()


@pytest.mark.redis_kinds("single")
async def test_one_trigger_whatever_the_order_duplicates_and_consumers(settings: Settings) -> None:
    """The 12 (media, service) results of a 3-media post, shuffled, each sent twice, consumed by
    two services at once: exactly one trigger; the answer to it lands, a stale one does not."""
    rng = random.Random(12)
    async with trio.open_nursery() as nursery:
        one: Running = await nursery.start(
            lambda task_status: serve(attrs.evolve(settings, instance="a"),
                                      task_status=task_status))  # fmt: skip
        await reset(service_of(one).backends)
        two: Running = await nursery.start(
            lambda task_status: serve(attrs.evolve(settings, instance="b"),
                                      task_status=task_status))  # fmt: skip
        backends = service_of(one).backends
        base = "http://" + one.http_addresses[0].split("://")[-1]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            r = await http.post("/v1/posts", json={"postId": 9, "userId": 3,
                                                   "media": media(91, 92, 93)})  # fmt: skip
            assert r.status_code == 201
            results = []
            for media_id in (91, 92, 93):
                base_fields = {"mediaId": str(media_id), "postId": "9"}
                results += [
                    {**base_fields, "service": "moderation", "isSafe": "true",
                     "moderationConfidence": "0.9"},
                    {**base_fields, "service": "tagging", "tags": '["dog"]'},
                    {**base_fields, "service": "scene_recognition", "scenes": '["park"]'},
                    {**base_fields, "service": "image_captioning", "caption": "a dog"},
                ]  # fmt: skip
            sent = results * 2
            rng.shuffle(sent)
            for fields in sent:
                await xadd(backends, INSIGHTS_STREAM, fields)

            async def all_applied() -> bool:
                return await processed(backends, INSIGHTS_STREAM) == len(sent)

            await wait_until(all_applied, timeout=20)

            async def relayed() -> bool:
                return not await backends.postgres.fetchval("SELECT count(*) FROM outbox")

            await wait_until(relayed)
            (trigger,) = await outbound(backends, AGGREGATION_TRIGGER_STREAM)
            assert len(decode_aggregation_trigger(trigger).media_insights) == 12
            consumers = [*service_of(one).consumers, *service_of(two).consumers]
            assert sum(c.stats.applied for c in consumers if c.stream == INSIGHTS_STREAM) == 24

            answer = {"postId": "9", "mediaCount": "3", "allAiTags": '["dog","dog","dog"]',
                      "allAiScenes": '["park"]', "aggregatedTags": '["dog"]',
                      "aggregatedScenes": '["park"]', "totalFaces": "0", "isSafe": "false",
                      "moderationConfidence": "0.9", "inferredEventType": "general",
                      "combinedCaption": "a dog", "hasMultipleImages": "true",
                      "timestamp": "2026-05-04T10:15:30.123456Z",
                      "correlationId": trigger["correlationId"], "version": "1"}  # fmt: skip
            await xadd(backends, POST_INSIGHTS_STREAM, answer)
            stale = {**answer, "isSafe": "true", "combinedCaption": "stale",
                     "correlationId": "3c1e0f4a-7b9d-4e2a-8f6b-0a1b2c3d4e5f"}  # fmt: skip
            await xadd(backends, POST_INSIGHTS_STREAM, stale)

            async def answered() -> bool:
                return await processed(backends, POST_INSIGHTS_STREAM) == 2

            await wait_until(answered)
            post = (await http.get("/v1/posts/9")).json()
            assert post["insights"]["combinedCaption"] == "a dog"
            assert post["status"] == "FLAGGED"  # the aggregator called the post unsafe
            enriched = [c for c in consumers if c.stream == POST_INSIGHTS_STREAM]
            assert sum(c.stats.stale for c in enriched) == 1
            assert sum(c.stats.applied for c in enriched) == 1
        one.stop()
        two.stop()
