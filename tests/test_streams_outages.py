"""The stream consumers through Redis flushes and a PostgreSQL outage (real servers)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import partial
from typing import Any

import trio

from kaleido.devstack import DevStack
from kaleido.errors import TransientError
from kaleido.gateways import Backends
from kaleido.messages import FACE_DETECTION_STREAM, FACE_RECOGNITION_STREAM, INSIGHTS_STREAM
from kaleido.streams import StreamConsumer

from .streams_helpers import ALL_STREAMS, dlq_len, pending_count, processed, running, xadd
from .waiting import wait_until


def entry(stream: str, n: int) -> dict[str, str]:
    """A valid entry of `stream`, distinct per `n`."""
    uid = f"00000000-0000-4000-8000-{n:012d}"
    if stream == INSIGHTS_STREAM:
        return {"mediaId": str(n), "postId": "1", "service": "tagging", "tags": f'["t{n}"]'}
    if stream == FACE_DETECTION_STREAM:
        face = {"faceId": uid, "bbox": [0, 0, 9, 9], "embedding": [], "confidence": 0.9}
        return {"mediaId": str(n), "postId": "1", "facesDetected": "1", "faces": json.dumps([face])}
    assert stream == FACE_RECOGNITION_STREAM
    return {"mediaId": str(n), "postId": "1", "faceId": uid, "suggestedUserId": "3",
            "confidenceScore": "0.7"}  # fmt: skip


async def _all_applied(backends: Backends, count: int) -> bool:
    try:
        for stream in ALL_STREAMS:
            if await processed(backends, stream) < count or await pending_count(backends, stream):
                return False
    except TransientError:  # PostgreSQL still down, or its breaker not yet closed again
        return False
    return True


async def test_flushall_while_consuming_recreates_the_groups(backends: Backends) -> None:
    async with running(backends) as consumers:
        for stream in ALL_STREAMS:
            await xadd(backends, stream, entry(stream, 1))
        await wait_until(lambda: _all_applied(backends, 1))
        await backends.redis.execute("FLUSHALL")
        for stream in ALL_STREAMS:
            await xadd(backends, stream, entry(stream, 2))
        await wait_until(lambda: _all_applied(backends, 2), timeout=5)
        # and again, this time with nothing written after the flush for a moment
        await backends.redis.execute("FLUSHALL")
        await wait_until(lambda: _groups_exist(backends), timeout=5)
        for stream in ALL_STREAMS:
            await xadd(backends, stream, entry(stream, 3))
        await wait_until(lambda: _all_applied(backends, 3), timeout=5)
    for consumer in consumers.values():
        assert consumer.stats.nogroup >= 1
        assert consumer.stats.dead_lettered == 0


async def _groups_exist(backends: Backends) -> bool:
    for stream in ALL_STREAMS:
        if not await backends.redis.execute("EXISTS", stream):
            return False
    return True


async def test_postgres_down_keeps_entries_pending_then_applies_them(
    backends: Backends, stack: DevStack
) -> None:
    per_stream = 0
    async with running(backends) as consumers:
        for stream in ALL_STREAMS:
            await xadd(backends, stream, entry(stream, 1))
        per_stream = 1
        await wait_until(lambda: _all_applied(backends, 1))
        stack.postgres.stop()
        try:
            # Entries keep arriving through a 6 s outage (several retries of each batch).
            end = trio.current_time() + 6
            while trio.current_time() < end:
                per_stream += 1
                for stream in ALL_STREAMS:
                    await xadd(backends, stream, entry(stream, per_stream))
                await trio.sleep(0.5)
            for consumer in consumers.values():
                assert consumer.stats.retried >= 1  # it tried, failed, and kept the entries
            for stream in ALL_STREAMS:
                assert await pending_count(backends, stream) >= 1
        finally:
            stack.postgres.start()
        await wait_until(lambda: _all_applied(backends, per_stream), timeout=15)
        for stream in ALL_STREAMS:
            assert await dlq_len(backends, stream) == 0
            assert await processed(backends, stream) == per_stream
    pg = backends.postgres
    assert await pg.fetchval("SELECT count(*) FROM media_ai_insights") == per_stream
    faces = await pg.fetch("SELECT status, bbox FROM media_detected_faces")
    assert [(f["status"], f["bbox"]) for f in faces] == [("SUGGESTED", [0, 0, 9, 9])] * per_stream
    for consumer in consumers.values():
        assert consumer.stats.dead_lettered == 0
        # A COMMIT cut off by the shutdown may have landed: its retry is then a duplicate.
        assert consumer.stats.applied + consumer.stats.duplicates >= per_stream


async def test_redis_restart_is_survived_without_a_crash(
    backends: Backends, stack: DevStack
) -> None:
    """Redis stops (consumers see connection errors, then an open breaker), restarts empty
    (no persistence in redis.conf): the groups are recreated and new entries applied."""
    async with running(backends) as consumers:
        for stream in ALL_STREAMS:
            await xadd(backends, stream, entry(stream, 1))
        await wait_until(lambda: _all_applied(backends, 1))
        stack.redis.stop()
        try:
            await wait_until(lambda: _all_saw_redis_errors(consumers.values()), timeout=10)
        finally:
            stack.redis.start()
        for stream in ALL_STREAMS:
            await wait_until(partial(_try_xadd, backends, stream, entry(stream, 2)), timeout=15)
        await wait_until(lambda: _all_applied(backends, 2), timeout=15)
    for consumer in consumers.values():
        assert consumer.stats.redis_errors >= 1 and consumer.stats.nogroup >= 1
        assert consumer.stats.dead_lettered == 0


async def _all_saw_redis_errors(consumers: Iterable[StreamConsumer[Any]]) -> bool:
    return all(c.stats.redis_errors >= 1 for c in consumers)


async def _try_xadd(backends: Backends, stream: str, fields: dict[str, str]) -> bool:
    try:
        await xadd(backends, stream, fields)
    except TransientError:  # still down, or the breaker not closed yet
        return False
    return True
