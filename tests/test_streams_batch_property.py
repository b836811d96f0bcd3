"""A batch is an optimisation, never a meaning: for every inbound handler, entries applied one
per batch and the same entries in random batch splits (and batch sizes) leave the same
PostgreSQL state, the same dead letters (ids and reasons), the same counts and the same
announcements. And the order of application does not matter either: the same entries applied
in a random order (as after a lost read reply, a reclaim, or several consumers) end in the
same state, with the same dead letters. Real PostgreSQL; generated sequences of valid results,
results naming another post, duplicates, redeliveries, poison entries and stale answers.

`KALEIDO_PROPERTY_EXAMPLES` sets the examples per handler (a short run by default; the long
form is 500).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kaleido.gateways import Backends, open_backends
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INSIGHTS_STREAM,
    POST_INSIGHTS_STREAM,
    PROFILE_FACE_STREAM,
)
from kaleido.messages.dlq import Rejection
from kaleido.settings import Settings
from kaleido.streams import (
    FaceDetectionHandler,
    FaceRecognitionHandler,
    Handler,
    InsightsHandler,
    PostInsightsHandler,
    ProfileFaceHandler,
)
from kaleido.streams.batches import BatchPipeline
from kaleido.streams.counters import ConsumerCounters
from kaleido.streams.inbound import Entry
from kaleido.streams.ledger import PostgresLedger

pytestmark = pytest.mark.redis_kinds("single")

EXAMPLES = int(os.environ.get("KALEIDO_PROPERTY_EXAMPLES", "12"))
DIM = 4  # embeddings of this size in the generated entries (the handlers are told so)
FACES = [str(uuid.UUID(int=n)) for n in range(1, 4)]
REQUEST = {7: "req-7-new", 8: "req-8"}  # the users' latest profile picture requests
TRIGGER = {1: "agg-1-new", 2: "agg-2"}  # the posts' latest aggregation triggers

# --------------------------------------------------------------------------- the world


async def _world(backends: Backends) -> None:
    """Posts 1 (media 1, 2) and 2 (media 3); two picture requests, two trigger claims."""
    pg = backends.postgres
    for table in _CLEARED:  # DELETE: these tables are small, TRUNCATE's locks cost more
        await pg.execute(f"DELETE FROM {table}")
    await pg.execute("INSERT INTO posts (post_id, user_id) VALUES (1, 10), (2, 20)")
    await pg.execute(
        "INSERT INTO post_media (media_id, post_id, media_url, position) VALUES"
        " (1, 1, 'https://a.example/1', 0), (2, 1, 'https://a.example/2', 1),"
        " (3, 2, 'https://a.example/3', 0)"
    )
    for user, cid in REQUEST.items():
        await pg.execute(
            "INSERT INTO profile_picture_requests (user_id, correlation_id, image_url, username)"
            " VALUES ($1, $2, 'https://a.example/p', $3)",
            user,
            cid,
            f"user{user}",
        )
    await pg.execute(
        "INSERT INTO post_aggregations (post_id, media_version, correlation_id) VALUES"
        " (1, 0, 'agg-1-old'), (1, 1, 'agg-1-new'), (2, 1, 'agg-2')"
    )
    await pg.execute("DELETE FROM outbox")  # what storing the world announced


_CLEARED = (
    "outbox", "post_insights", "post_aggregations", "read_model_known_faces",
    "read_model_face_search", "read_model_recommendations_knn", "read_model_feed_personalized",
    "user_face_embeddings", "profile_picture_requests", "processed_messages",
    "media_detected_faces", "media_ai_insights", "post_media", "posts",
)  # fmt: skip
# Columns that differ between two runs for reasons of time or of identity, not of meaning.
_VOLATILE = {"created_at", "updated_at", "enrolled_at", "claimed_at", "processed_at", "id",
             "requested_at", "aggregated_at"}  # fmt: skip
_TABLES = {
    "posts": "post_id",
    "media_ai_insights": "media_id",
    "media_detected_faces": "media_id, face_uid",
    "processed_messages": "stream, entry_id",
    "user_face_embeddings": "user_id",
    "read_model_known_faces": "face_id",
    "read_model_face_search": "face_id",
    "read_model_recommendations_knn": "media_id",
    "read_model_feed_personalized": "media_id",
    "post_aggregations": "post_id, media_version",
    "post_insights": "post_id",
}


def _stable(row: Mapping[str, Any], known_ids: set[str]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in _VOLATILE}
    if out.get("correlation_id") and out["correlation_id"] not in known_ids:
        out["correlation_id"] = "<new>"  # a fresh UUID made by the database
    return out


async def _state(backends: Backends, known_ids: set[str]) -> dict[str, Any]:
    pg = backends.postgres
    state: dict[str, Any] = {}
    for table, order in _TABLES.items():
        rows = await pg.fetch(f"SELECT * FROM {table} ORDER BY {order}")
        state[table] = [_stable(dict(r), known_ids) for r in rows]
    outbox = []
    for row in await pg.fetch("SELECT * FROM outbox ORDER BY coalesce_key, id"):
        fields = dict(zip(row["fields"][0::2], row["fields"][1::2], strict=True)) if row[
            "fields"] else None  # fmt: skip
        if fields is not None:
            fields.pop("timestamp", None)
            if fields.get("correlationId") not in known_ids:
                fields["correlationId"] = "<new>"
        outbox.append((row["stream"], row["kind"], row["subject"], row["coalesce_key"], fields))
    state["outbox"] = sorted(outbox, key=repr)
    return state


@attrs.define
class _Recorder:
    """The Redis side of one run: what was dead-lettered (and why) and acknowledged."""

    dead: list[tuple[str, str, str]] = attrs.Factory(list)
    acked: list[str] = attrs.Factory(list)

    async def dead_letter_and_ack(self, rejected: Sequence[Rejection], done: Sequence[str]) -> None:
        self.dead += [(r.entry_id, r.error_type, r.error) for r in rejected]
        self.acked += [*(r.entry_id for r in rejected), *done]


async def _run(
    backends: Backends,
    handler: Handler[Any],
    entries: list[Entry],
    redelivered: list[Entry],
    splits: list[int] | None,
    batch_size: int,
) -> tuple[Any, ...]:
    """Apply `entries` (in batches of `splits`, or one per batch), then the redeliveries one by
    one; return everything observable."""
    await _world(backends)
    recorder = _Recorder()
    counters = ConsumerCounters(handler.stream)
    pipeline = BatchPipeline(
        recorder,  # type: ignore[arg-type]  # only dead_letter_and_ack is called
        PostgresLedger(backends.postgres),
        handler,
        counters,
        backends.keys.stream(handler.stream),
        max_deliveries=5,
        batch_size=batch_size,
    )
    chunks: list[list[Entry]] = []
    if splits is None:
        chunks = [[e] for e in entries]
    else:
        start = 0
        for size in [*splits, len(entries)]:
            if start >= len(entries):
                break
            chunks.append(entries[start : start + size])
            start += size
    for chunk in chunks:
        await pipeline.handle(chunk, {})
    for entry in redelivered:
        await pipeline.handle([entry], {entry.id: 2}, retry=True)
    stats = counters.stats
    counts = (stats.applied, stats.duplicates, stats.ignored, stats.stale, stats.dead_lettered)
    known = {f.get(b"correlationId", b"").decode() for e in entries for f in [e.fields]}
    return (await _state(backends, known), recorder.dead, sorted(recorder.acked), counts)


def _entries(raw: list[dict[str, str]]) -> list[Entry]:
    return [
        Entry(f"{n}-0", {k.encode(): v.encode() for k, v in fields.items()})
        for n, fields in enumerate(raw, 1)
    ]


def _any_order(observed: tuple[Any, ...]) -> tuple[Any, ...]:
    """What no order of application may change: the dead letters as a set, and the search
    sync's announcements without the correlation id of whichever change came last."""
    state, dead, acked, counts = observed
    outbox = [
        (s, k, subject, key, None if f is None else {**f, "correlationId": "<any>"})
        if s == "es-sync-queue" else (s, k, subject, key, f)
        for s, k, subject, key, f in state["outbox"]
    ]  # fmt: skip
    return ({**state, "outbox": sorted(outbox, key=repr)}, sorted(dead), acked, counts)


async def _check(
    settings: Settings,
    handler: Handler[Any],
    raw: list[dict[str, str]],
    redeliver: list[int],
    splits: list[int],
    batch_size: int,
    order: list[int] | None = None,
) -> None:
    entries = _entries(raw)
    redelivered = [entries[i % len(entries)] for i in redeliver] if entries else []
    # Each example runs in a trio run of its own: its own connections.
    async with open_backends(settings) as backends:
        one_by_one = await _run(backends, handler, entries, redelivered, None, 1)
        batched = await _run(backends, handler, entries, redelivered, splits, batch_size)
        assert batched == one_by_one
        if order is not None:
            shuffled = sorted(entries, key=lambda e: order[int(e.id.split("-")[0]) % len(order)])
            reordered = await _run(backends, handler, shuffled, redelivered, splits, batch_size)
            assert _any_order(reordered) == _any_order(one_by_one)


# --------------------------------------------------------------------------- generated entries

media = st.sampled_from([1, 2, 3, 99])  # 99 belongs to no post
posts = st.sampled_from([1, 2, 6000])
cids = st.sampled_from(["", "c-1", "c-2", "1234", "None"])
splits = st.lists(st.integers(min_value=1, max_value=8), max_size=8)
batch_sizes = st.integers(min_value=1, max_value=6)
redeliveries = st.lists(st.integers(min_value=0, max_value=50), max_size=3)
orders = st.permutations(list(range(16)))  # a random order of application
vectors = st.lists(st.sampled_from([0.0, 0.25, -1.0]), min_size=DIM, max_size=DIM)


SERVICES = ("moderation", "tagging", "scene_recognition", "image_captioning", "image_embedding",
            "unknown", "poison")  # fmt: skip


@st.composite
def insight(draw: st.DrawFn) -> dict[str, str]:
    fields = {"mediaId": str(draw(media)), "postId": str(draw(posts)),
              "correlationId": draw(cids)}  # fmt: skip
    service = draw(st.sampled_from(SERVICES))
    match service:
        case "moderation":
            fields |= {"isSafe": draw(st.sampled_from(["true", "false"])),
                       "moderationConfidence": draw(st.sampled_from(["0.5", "0.9"]))}  # fmt: skip
        case "tagging":
            fields["tags"] = json.dumps(draw(st.lists(st.sampled_from(["a", "b"]), max_size=2)))
        case "scene_recognition":
            fields["scenes"] = draw(st.sampled_from(['["park"]', "beach, city"]))
        case "image_captioning":
            fields["caption"] = draw(st.sampled_from(["x", "y"]))
        case "image_embedding":
            fields["imageEmbedding"] = json.dumps(draw(vectors))
        case "poison":
            fields["isSafe"] = "maybe"
            service = "moderation"
    return {**fields, "service": service}


@st.composite
def detection(draw: st.DrawFn) -> dict[str, str]:
    faces = [
        {"faceId": face, "bbox": [1, 2, 3, 4], "embedding": draw(st.just([]) | vectors),
         "confidence": draw(st.sampled_from([0.5, 0.9]))}
        for face in draw(st.lists(st.sampled_from(FACES), max_size=2, unique=True))
    ]  # fmt: skip
    if draw(st.booleans()) and faces and draw(st.integers(0, 9)) == 0:
        faces[0]["embedding"] = [0.5] * (DIM + 1)  # poison: a wrong size
    return {"mediaId": str(draw(media)), "postId": str(draw(posts)),
            "facesDetected": str(len(faces)), "faces": json.dumps(faces),
            "correlationId": draw(cids)}  # fmt: skip


@st.composite
def recognition(draw: st.DrawFn) -> dict[str, str]:
    fields = {"mediaId": str(draw(media)), "postId": str(draw(posts)),
              "faceId": draw(st.sampled_from(FACES)),
              "suggestedUserId": str(draw(st.sampled_from([7, 8]))),
              "confidenceScore": draw(st.sampled_from(["0.9", "0.7", "2"])),  # 2: poison
              "correlationId": draw(cids)}  # fmt: skip
    if draw(st.booleans()):
        fields["matchedUsername"] = draw(st.sampled_from(["alice", "bob"]))
    return fields


@st.composite
def profile_face(draw: st.DrawFn) -> dict[str, str]:
    return {"userId": str(draw(st.sampled_from([7, 8, 9]))),
            "faceEmbedding": json.dumps(draw(vectors | st.just([0.0] * DIM) | st.just([1.0]))),
            "correlationId": draw(st.sampled_from(["req-7-new", "req-7-old", "req-8", "None",
                                                   ""]))}  # fmt: skip


TRIGGER_IDS = ("agg-1-new", "agg-1-old", "agg-2", "")


@st.composite
def enriched(draw: st.DrawFn) -> dict[str, str]:
    return {"postId": str(draw(st.sampled_from([1, 2, 3]))), "mediaCount": "2",
            "allAiTags": '["a"]', "allAiScenes": "[]", "aggregatedTags": '["a"]',
            "aggregatedScenes": "[]", "totalFaces": draw(st.sampled_from(["0", "-1"])),
            "isSafe": draw(st.sampled_from(["true", "false"])), "moderationConfidence": "0.5",
            "inferredEventType": "general", "combinedCaption": draw(st.sampled_from(["x", "y"])),
            "hasMultipleImages": "true",
            "correlationId": draw(st.sampled_from(TRIGGER_IDS))}  # fmt: skip


COMMON = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The forged result of the defect report: media 1 of post 1, naming post 6000, unsafe, read in
# the same batch as a good result for that media.
FORGED = [
    {"mediaId": "1", "postId": "1", "service": "tagging", "tags": '["a"]', "correlationId": "c-1"},
    {"mediaId": "1", "postId": "6000", "service": "moderation", "isSafe": "false",
     "moderationConfidence": "0.9", "correlationId": "c-2"},
]  # fmt: skip


# Two results for one media in one read, the first without a correlation id: the search sync's
# announcement carries the id of the last change either way.
TWO_TAGGINGS = [
    {"mediaId": "2", "postId": "1", "service": "tagging", "tags": '["a"]', "correlationId": ""},
    {"mediaId": "2", "postId": "1", "service": "tagging", "tags": '["b"]', "correlationId": "c-1"},
]  # fmt: skip


@COMMON
@given(st.lists(insight(), max_size=14), redeliveries, splits, batch_sizes, orders)
@example(FORGED, [], [2], 2, list(range(16)))
@example(list(reversed(FORGED)), [], [2], 2, list(range(16)))
@example(TWO_TAGGINGS, [], [2], 2, list(range(16)))
async def test_insights(
    settings: Settings,
    raw: list[dict[str, str]],
    again: list[int],
    cuts: list[int],
    size: int,
    order: list[int],
) -> None:
    assert INSIGHTS_STREAM
    await _check(settings, InsightsHandler(embedding_dim=DIM), raw, again, cuts, size, order)


# Every other inbound handler, with the entries it is given.
HANDLERS: dict[str, tuple[Handler[Any], st.SearchStrategy[list[dict[str, str]]]]] = {
    FACE_DETECTION_STREAM: (
        FaceDetectionHandler(embedding_dim=DIM),
        st.lists(detection(), max_size=10),
    ),
    FACE_RECOGNITION_STREAM: (FaceRecognitionHandler(), st.lists(recognition(), max_size=10)),
    PROFILE_FACE_STREAM: (
        ProfileFaceHandler(embedding_dim=DIM),
        st.lists(profile_face(), max_size=8),
    ),
    POST_INSIGHTS_STREAM: (PostInsightsHandler(), st.lists(enriched(), max_size=8)),
}


@pytest.mark.parametrize("stream", HANDLERS)
@COMMON
@given(data=st.data(), again=redeliveries, cuts=splits, size=batch_sizes, order=orders)
async def test_handler(
    settings: Settings,
    stream: str,
    data: st.DataObject,
    again: list[int],
    cuts: list[int],
    size: int,
    order: list[int],
) -> None:
    handler, entries = HANDLERS[stream]
    assert handler.stream == stream
    await _check(settings, handler, data.draw(entries, label="raw"), again, cuts, size, order)
