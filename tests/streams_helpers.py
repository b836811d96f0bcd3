"""Helpers for the stream tests: run consumers in-process, add entries, poll conditions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from kaleido.gateways import Backends
from kaleido.messages import (
    FACE_DETECTION_STREAM,
    FACE_RECOGNITION_STREAM,
    INSIGHTS_STREAM,
)
from kaleido.streams import (
    FaceDetectionHandler,
    FaceRecognitionHandler,
    InsightsHandler,
    StreamConsumer,
    consumer_name,
)

HANDLERS = {
    INSIGHTS_STREAM: InsightsHandler,
    FACE_DETECTION_STREAM: FaceDetectionHandler,
    FACE_RECOGNITION_STREAM: FaceRecognitionHandler,
}
ALL_STREAMS = tuple(HANDLERS)


def make_consumer(
    backends: Backends, stream: str, stopping: trio.Event | None = None, **options: Any
) -> StreamConsumer[Any]:
    options.setdefault("block_ms", 100)  # prompt shutdown in tests
    name = options.pop("name", consumer_name(stream))
    return StreamConsumer.over(
        backends.redis,
        backends.postgres,
        backends.keys,
        HANDLERS[stream](),
        name,
        trio.Event() if stopping is None else stopping,
        **options,
    )


@asynccontextmanager
async def running(
    backends: Backends, *streams: str, **options: Any
) -> AsyncIterator[dict[str, StreamConsumer[Any]]]:
    """Run one consumer per stream (default: all three); stop them gracefully on exit."""
    stopping = trio.Event()
    consumers = {s: make_consumer(backends, s, stopping, **options) for s in streams or ALL_STREAMS}
    async with trio.open_nursery() as nursery:
        for consumer in consumers.values():
            await nursery.start(consumer.run)
        yield consumers
        stopping.set()


async def xadd(backends: Backends, stream: str, fields: Mapping[Any, Any]) -> str:
    flat: list[Any] = []
    for key, value in fields.items():
        flat += [key, value]
    entry_id = await backends.redis.execute("XADD", backends.keys.stream(stream), "*", *flat)
    return str(entry_id.decode())


async def pending_count(backends: Backends, stream: str) -> int:
    summary = await backends.redis.execute(
        "XPENDING", backends.keys.stream(stream), "backend-group"
    )
    return int(summary["pending"])


async def dlq_len(backends: Backends, stream: str) -> int:
    return int(await backends.redis.execute("XLEN", backends.keys.dlq(stream)))


async def processed(backends: Backends, stream: str) -> int:
    return int(
        await backends.postgres.fetchval(
            "SELECT count(*) FROM processed_messages WHERE stream = $1",
            backends.keys.stream(stream),
        )
    )


async def insight(backends: Backends, media_id: int) -> dict[str, Any] | None:
    row = await backends.postgres.fetchrow(
        "SELECT * FROM media_ai_insights WHERE media_id = $1", media_id
    )
    return None if row is None else dict(row)


async def face(backends: Backends, media_id: int, face_uid: str) -> dict[str, Any] | None:
    row = await backends.postgres.fetchrow(
        "SELECT * FROM media_detected_faces WHERE media_id = $1 AND face_uid = $2",
        media_id,
        face_uid,
    )
    return None if row is None else dict(row)


async def create_post(
    backends: Backends, post_id: int, status: str = "PUBLISHED", media: tuple[int, ...] = ()
) -> None:
    """A post row, and a post_media row for each of `media`."""
    await backends.postgres.execute(
        "INSERT INTO posts (post_id, user_id, status) VALUES ($1, 1, $2)", post_id, status
    )
    for position, media_id in enumerate(media):
        await backends.postgres.execute(
            "INSERT INTO post_media (media_id, post_id, media_url, position) "
            "VALUES ($1, $2, $3, $4)",
            media_id, post_id, f"https://cdn.example.com/{media_id}.jpg", position,
        )  # fmt: skip


async def post_status(backends: Backends, post_id: int) -> str | None:
    value = await backends.postgres.fetchval("SELECT status FROM posts WHERE post_id = $1", post_id)
    return None if value is None else str(value)
