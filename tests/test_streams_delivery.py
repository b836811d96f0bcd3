"""Delivery semantics of the stream consumer: redelivery, poison entries, DLQ, reclaim, trim."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import attrs
import pytest
import trio

from kaleido.errors import PostgresUnavailable
from kaleido.gateways import Backends, Transaction
from kaleido.messages import (
    CONSUMER_GROUP,
    FACE_DETECTION_STREAM,
    FACE_EMBEDDING_DIM,
    INSIGHTS_STREAM,
    Fields,
    IgnoredEntry,
    InsightResult,
)
from kaleido.messages.dlq import Rejection
from kaleido.streams import (
    InsightsHandler,
    StreamConsumer,
    consumer_name,
    dlq_list,
    dlq_purge,
    dlq_replay,
    dlq_replay_all,
    ensure_group,
)
from kaleido.streams.handlers import Stale
from kaleido.streams.inbound import RedisInboundStream
from kaleido.streams.ledger import PostgresLedger

from .streams_helpers import (
    dlq_len,
    insight,
    make_consumer,
    pending_count,
    processed,
    running,
    xadd,
)
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")


def _insight(media_id: int, **extra: str) -> dict[bytes, bytes]:
    fields = {"mediaId": str(media_id), "postId": "1", "service": "tagging", "tags": '["a"]'}
    fields.update(extra)
    return {k.encode(): v.encode() for k, v in fields.items()}


class Crash(Exception):
    """Stands for the process dying between COMMIT and XACK."""


@attrs.frozen
class CrashBeforeAck(RedisInboundStream):
    async def dead_letter_and_ack(self, rejected: Sequence[Rejection], done: Sequence[str]) -> None:
        raise Crash


async def test_an_entry_delivered_twice_has_one_effect(backends: Backends) -> None:
    ids = [await xadd(backends, INSIGHTS_STREAM, _insight(m)) for m in (1, 2, 3)]
    name, key = consumer_name(INSIGHTS_STREAM), backends.keys.stream(INSIGHTS_STREAM)
    crashing: StreamConsumer[Any] = StreamConsumer(
        CrashBeforeAck(backends.redis, key, backends.keys.dlq(INSIGHTS_STREAM), name),
        PostgresLedger(backends.postgres),
        InsightsHandler(),
        name,
        key,
        trio.Event(),
        block_ms=100,
    )
    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            await nursery.start(crashing.run)
    assert caught.group_contains(Crash)
    assert crashing.stats.applied == 3
    assert await processed(backends, INSIGHTS_STREAM) == 3
    assert await pending_count(backends, INSIGHTS_STREAM) == 3  # committed, never acknowledged
    # a second application would set the tags again over this marker
    await backends.postgres.execute("UPDATE media_ai_insights SET tags = '{marker}'")

    async with running(backends, INSIGHTS_STREAM) as consumers:  # same name: finds its pending
        await wait_until(lambda: _equals(pending_count(backends, INSIGHTS_STREAM), 0))
    stats = consumers[INSIGHTS_STREAM].stats
    assert (stats.applied, stats.duplicates) == (0, 3)
    rows = await backends.postgres.fetch("SELECT tags, services_completed FROM media_ai_insights")
    assert [(r["tags"], r["services_completed"]) for r in rows] == [(["marker"], ["tagging"])] * 3
    assert await processed(backends, INSIGHTS_STREAM) == len(ids)


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


POISON: list[tuple[str, dict[bytes, bytes], str]] = [
    ("missing field", {b"postId": b"1", b"service": b"tagging", b"tags": b"[]"}, "mediaId"),
    ("bad JSON", _insight(2, tags='["a", '), "tags"),
    ("wrong type", _insight(3, service="moderation", isSafe="maybe"), "isSafe"),
    ("2 MB field", _insight(4, service="image_captioning", caption="x" * 2_000_000), "caption"),
    ("invalid UTF-8", {**_insight(5), b"mediaId": b"\xff\xfe5"}, "mediaId"),
]


@pytest.mark.parametrize("batch_size", [1, 256])
async def test_poison_entries_go_to_the_dlq_and_the_rest_is_applied(
    backends: Backends, batch_size: int
) -> None:
    expected_good = []
    async with running(backends, INSIGHTS_STREAM, batch_size=batch_size) as consumers:
        for index, (_, fields, _) in enumerate(POISON):
            await xadd(backends, INSIGHTS_STREAM, _insight(100 + index))
            expected_good.append(100 + index)
            await xadd(backends, INSIGHTS_STREAM, fields)
        # decodes, but PostgreSQL rejects it (NUL in text): the batch is retried one by one
        await xadd(backends, INSIGHTS_STREAM, _insight(6, service="image_captioning", caption="\0"))
        await xadd(backends, INSIGHTS_STREAM, _insight(200))
        expected_good.append(200)
        await wait_until(lambda: _equals(dlq_len(backends, INSIGHTS_STREAM), len(POISON) + 1))
        await wait_until(lambda: _equals(pending_count(backends, INSIGHTS_STREAM), 0))
        # still running
        await xadd(backends, INSIGHTS_STREAM, _insight(300))
        await wait_until(lambda: _has_insight(backends, 300))
    for media_id in expected_good:
        assert await insight(backends, media_id) is not None
    stats = consumers[INSIGHTS_STREAM].stats
    assert stats.dead_lettered == len(POISON) + 1
    letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
    assert len(letters) == len(POISON) + 1
    for letter, (_, fields, field) in zip(letters, POISON, strict=False):
        assert letter.error.startswith(field + ":"), letter.error
        assert letter.error_type == "DecodeError"
        assert letter.deliveries == 1
        assert letter.failed_at.endswith("Z")
        assert letter.original_id
        assert set(letter.fields) == {k.decode() for k in fields}
    assert letters[-1].error_type == "PostgresQueryError"
    raw = await backends.redis.execute("XRANGE", backends.keys.dlq(INSIGHTS_STREAM), "-", "+")
    assert raw[3][1][b"caption"] == b"x" * 2_000_000  # the original, byte for byte
    assert raw[4][1][b"mediaId"] == b"\xff\xfe5"


async def _has_insight(backends: Backends, media_id: int) -> bool:
    return await insight(backends, media_id) is not None


async def test_bad_faces_go_to_the_dlq(backends: Backends) -> None:
    good_face = {"faceId": "8d0f3a52-6c1e-4b7a-9f3e-2a1b0c9d8e7f", "bbox": [1, 2, 3, 4],
                 "embedding": [0.1] * FACE_EMBEDDING_DIM, "confidence": 0.5}  # fmt: skip
    bad = [
        {**good_face, "faceId": 17},  # a number, not a UUID
        {**good_face, "bbox": [1, 2, 3]},
        {**good_face, "embedding": ["x"]},
    ]
    async with running(backends, FACE_DETECTION_STREAM):
        for face in [*bad, good_face]:
            fields = {"mediaId": "9", "postId": "1", "facesDetected": "1",
                      "faces": json.dumps([face])}  # fmt: skip
            await xadd(backends, FACE_DETECTION_STREAM, fields)
        await wait_until(lambda: _equals(processed(backends, FACE_DETECTION_STREAM), 1))
        await wait_until(lambda: _equals(dlq_len(backends, FACE_DETECTION_STREAM), 3))
    assert await backends.postgres.fetchval("SELECT count(*) FROM media_detected_faces") == 1


async def _deliver_to_ghost(backends: Backends, stream: str, times: int) -> list[str]:
    """Deliver every new entry to a consumer that then dies, `times` times over."""
    key = backends.keys.stream(stream)
    await ensure_group(backends.redis, key)
    reply = await backends.redis.execute(
        "XREADGROUP", "GROUP", CONSUMER_GROUP, "ghost", "STREAMS", key, ">"
    )
    ids = [entry_id.decode() for entry_id, _ in reply[0][1]]
    for _ in range(times - 1):
        await backends.redis.execute("XCLAIM", key, CONSUMER_GROUP, "ghost", 0, *ids)
    return ids


async def test_reclaim_takes_over_a_dead_consumers_entries(backends: Backends) -> None:
    await xadd(backends, INSIGHTS_STREAM, _insight(11))
    await _deliver_to_ghost(backends, INSIGHTS_STREAM, 1)
    async with running(
        backends, INSIGHTS_STREAM, min_idle=0.05, reclaim_interval=0.05
    ) as consumers:
        await wait_until(lambda: _has_insight(backends, 11))
        await wait_until(lambda: _equals(pending_count(backends, INSIGHTS_STREAM), 0))
    assert consumers[INSIGHTS_STREAM].stats.reclaimed == 1


async def test_max_deliveries_then_replay_once_then_purge(backends: Backends) -> None:
    await xadd(backends, INSIGHTS_STREAM, _insight(21))
    await xadd(backends, INSIGHTS_STREAM, _insight(22))
    await _deliver_to_ghost(backends, INSIGHTS_STREAM, 5)  # the claim makes it a 6th delivery
    options: Mapping[str, Any] = {"min_idle": 0.05, "reclaim_interval": 0.05, "max_deliveries": 5}
    async with running(backends, INSIGHTS_STREAM, **options) as consumers:
        await wait_until(lambda: _equals(dlq_len(backends, INSIGHTS_STREAM), 2))
        await wait_until(lambda: _equals(pending_count(backends, INSIGHTS_STREAM), 0))
        letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
        assert [letter.error_type for letter in letters] == ["MaxDeliveriesExceeded"] * 2
        assert [letter.deliveries for letter in letters] == [6, 6]
        assert await insight(backends, 21) is None

        replayed = await dlq_replay(
            backends.redis, backends.keys, INSIGHTS_STREAM, [letters[0].dlq_id]
        )
        assert len(replayed) == 1
        assert await dlq_replay(
            backends.redis, backends.keys, INSIGHTS_STREAM, [letters[0].dlq_id]
        ) == []  # fmt: skip
        report = await dlq_replay_all(backends.redis, backends.keys, INSIGHTS_STREAM)
        assert report.replayed == 1 and not report.more
        assert await dlq_len(backends, INSIGHTS_STREAM) == 0
        await wait_until(lambda: _has_insight(backends, 21))
        await wait_until(lambda: _has_insight(backends, 22))
        # the replayed entries are the originals, without the DLQ's fields
        entry = await backends.redis.execute("XRANGE", INSIGHTS_STREAM, replayed[0], replayed[0])
        assert entry[0][1] == _insight(21)
    assert consumers[INSIGHTS_STREAM].stats.applied == 2

    await xadd(backends, INSIGHTS_STREAM, {b"service": b"tagging"})
    async with running(backends, INSIGHTS_STREAM):
        await wait_until(lambda: _equals(dlq_len(backends, INSIGHTS_STREAM), 1))
    assert await dlq_purge(backends.redis, backends.keys, INSIGHTS_STREAM) == 1
    assert await dlq_len(backends, INSIGHTS_STREAM) == 0


async def test_own_pending_entries_past_max_deliveries_go_to_the_dlq(backends: Backends) -> None:
    """A consumer that keeps dying on an entry (a crash loop) eventually dead-letters it."""
    await xadd(backends, INSIGHTS_STREAM, _insight(31))
    ids = await _deliver_to_ghost(backends, INSIGHTS_STREAM, 3)
    async with running(backends, INSIGHTS_STREAM, name="ghost", max_deliveries=3):
        await wait_until(lambda: _equals(dlq_len(backends, INSIGHTS_STREAM), 1))
    letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
    assert (letters[0].original_id, letters[0].deliveries) == (ids[0], 4)


async def _stream_ids(backends: Backends, stream: str) -> list[str]:
    reply = await backends.redis.execute("XRANGE", stream, "-", "+")
    return [entry_id.decode() for entry_id, _ in reply]


async def test_trim_never_removes_unacknowledged_or_undelivered_entries(
    backends: Backends,
) -> None:
    key = INSIGHTS_STREAM
    ids = [await xadd(backends, INSIGHTS_STREAM, _insight(m)) for m in range(1, 11)]
    await ensure_group(backends.redis, key)
    await backends.redis.execute(
        "XREADGROUP", "GROUP", CONSUMER_GROUP, "ghost", "COUNT", 5, "STREAMS", key, ">"
    )
    await backends.redis.execute("XACK", key, CONSUMER_GROUP, ids[0], ids[1], ids[3])
    consumer = make_consumer(backends, INSIGHTS_STREAM)
    assert await consumer.trim() == 2  # ids[2] is the oldest pending
    assert await _stream_ids(backends, key) == ids[2:]
    await backends.redis.execute("XACK", key, CONSUMER_GROUP, ids[2], ids[4])
    assert await consumer.trim() == 2  # below the last delivered (ids[4]); 5..9 undelivered
    assert await _stream_ids(backends, key) == ids[4:]
    assert await consumer.trim() == 0

    # while consuming with frequent trims, every entry is still applied
    async with running(backends, INSIGHTS_STREAM, trim_interval=0.01, batch_size=3):
        for m in range(100, 160):
            await xadd(backends, INSIGHTS_STREAM, _insight(m))
        await wait_until(lambda: _equals(processed(backends, INSIGHTS_STREAM), 65))
        await wait_until(lambda: _equals(pending_count(backends, INSIGHTS_STREAM), 0))
    count = await backends.postgres.fetchval("SELECT count(*) FROM media_ai_insights")
    assert count == 65  # 5 left from above + 60


async def test_prune_removes_only_old_processed_rows(backends: Backends) -> None:
    await backends.postgres.execute(
        "INSERT INTO processed_messages (stream, entry_id, processed_at) VALUES"
        " ($1, '1-0', now() - interval '8 days'), ($1, '2-0', now()),"
        " ('other', '1-0', now() - interval '8 days')",
        INSIGHTS_STREAM,
    )
    consumer = make_consumer(backends, INSIGHTS_STREAM)
    assert await consumer.prune() == 1
    assert await backends.postgres.fetchval("SELECT count(*) FROM processed_messages") == 2


@attrs.frozen
class FailingHandler:
    """Insights, except that applying media `bad_media` raises `error` (a bug, or a server
    that keeps failing on this one entry as if it were down)."""

    error: Exception
    bad_media: int
    inner: InsightsHandler = attrs.Factory(InsightsHandler)

    @property
    def stream(self) -> str:
        return self.inner.stream

    def decode(self, fields: Fields) -> InsightResult | IgnoredEntry:
        return self.inner.decode(fields)

    async def apply(self, tx: Transaction, messages: Sequence[tuple[str, InsightResult]]) -> Stale:
        if any(m.media_id == self.bad_media for _, m in messages):
            raise self.error
        return await self.inner.apply(tx, messages)


async def _run_with(backends: Backends, handler: FailingHandler, **options: Any) -> Any:
    stopping = trio.Event()
    consumer = StreamConsumer.over(
        backends.redis,
        backends.postgres,
        backends.keys,
        handler,
        consumer_name(INSIGHTS_STREAM),
        stopping,
        block_ms=100,
        **options,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(consumer.run)
        await wait_until(lambda: _equals(dlq_len(backends, INSIGHTS_STREAM), 1))
        await wait_until(lambda: _equals(pending_count(backends, INSIGHTS_STREAM), 0))
        stopping.set()
    return consumer


async def test_a_handler_bug_on_one_entry_dead_letters_only_that_entry(
    backends: Backends,
) -> None:
    for media_id in (41, 42, 43):
        await xadd(backends, INSIGHTS_STREAM, _insight(media_id))
    consumer = await _run_with(backends, FailingHandler(RuntimeError("boom"), 42))
    assert [await _has_insight(backends, m) for m in (41, 42, 43)] == [True, False, True]
    letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
    assert (letters[0].error_type, letters[0].error) == ("RuntimeError", "boom")
    assert consumer.stats.applied == 2


async def test_a_failure_that_looks_transient_forever_ends_in_the_dlq(backends: Backends) -> None:
    """PostgreSQL answers the probe but keeps failing on one entry: its delivery count grows on
    each retry, and past max_deliveries it is dead-lettered, unblocking the rest."""
    for media_id in (51, 52):
        await xadd(backends, INSIGHTS_STREAM, _insight(media_id))
    handler = FailingHandler(
        PostgresUnavailable("postgres: canceling statement due to timeout", statement=True), 51
    )
    consumer = await _run_with(backends, handler, max_deliveries=3)
    letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
    assert (letters[0].error_type, letters[0].deliveries) == ("MaxDeliveriesExceeded", 4)
    assert await _has_insight(backends, 52)
    assert consumer.stats.retried >= 3
