"""The publisher over an in-memory `OutboundStreams`: the contract's fields, one round trip
per publish, trimming to `maxlen`, and failures that are raised, never swallowed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio

from kaleido.errors import RedisUnavailable
from kaleido.keys import KeyLayout
from kaleido.messages import (
    POST_IMAGE_STREAM,
    POST_UPDATE_STREAM,
    PROFILE_PICTURE_STREAM,
    PostMediaEvent,
    ProfilePictureEvent,
    decode_post_media,
    decode_profile_picture,
)
from kaleido.publisher import Publisher
from kaleido.streams.outbound import OutboundEntry, xadd_command

from .fakes import FakeOutbound

KEYS = KeyLayout("t1:")
WHEN = datetime(2026, 5, 4, 10, 15, 30, 123456, tzinfo=UTC)


def event(media_id: int, post_id: int = 7) -> PostMediaEvent:
    return PostMediaEvent(
        post_id=post_id,
        media_id=media_id,
        media_url=f"https://img.example.com/{media_id}.jpg",
        uploader_id=42,
        correlation_id=f"corr-{media_id}",
        timestamp=WHEN,
    )


async def test_post_media_is_published_with_the_contract_fields_in_one_round_trip(
    autojump_clock: trio.abc.Clock,
) -> None:
    outbound = FakeOutbound()
    publisher = Publisher(outbound, KEYS, maxlen=1000)
    events = [event(101), event(102)]
    ids = await publisher.publish_post_media(POST_IMAGE_STREAM, events)
    assert outbound.round_trips == 1
    stored = outbound.streams[KEYS.stream(POST_IMAGE_STREAM)]
    assert ids == [entry_id for entry_id, _ in stored]
    assert [decode_post_media(fields) for _, fields in stored] == events
    assert stored[0][1] == {
        "postId": "7",
        "mediaId": "101",
        "mediaUrl": "https://img.example.com/101.jpg",
        "imageUrl": "https://img.example.com/101.jpg",
        "uploaderId": "42",
        "timestamp": "2026-05-04T10:15:30.123456Z",
        "correlationId": "corr-101",
    }


async def test_every_entry_asks_for_trimming_to_maxlen(autojump_clock: trio.abc.Clock) -> None:
    outbound = FakeOutbound()
    publisher = Publisher(outbound, KEYS, maxlen=3)
    for media_id in range(1, 6):
        await publisher.publish_post_media(POST_UPDATE_STREAM, [event(media_id)])
    picture = ProfilePictureEvent(user_id=9, image_url="https://x.example/u", correlation_id="c")
    await publisher.publish_profile_picture(picture)
    assert outbound.maxlens == [3] * 6


def test_the_redis_command_trims_approximately_and_keeps_the_field_order() -> None:
    entry = OutboundEntry("t1:post-image-processing", {"postId": "7", "mediaId": "8"}, 3)
    assert xadd_command(entry) == [
        "XADD", "t1:post-image-processing", "MAXLEN", "~", "3", "*", "postId", "7", "mediaId", "8"
    ]  # fmt: skip


async def test_profile_picture_is_published_with_the_contract_fields(
    autojump_clock: trio.abc.Clock,
) -> None:
    outbound = FakeOutbound()
    publisher = Publisher(outbound, KEYS, maxlen=10)
    picture = ProfilePictureEvent(
        user_id=9, image_url="https://img.example.com/u.jpg", correlation_id="c-9", timestamp=WHEN
    )
    entry_id = await publisher.publish_profile_picture(picture)
    ((stored_id, fields),) = outbound.streams[KEYS.stream(PROFILE_PICTURE_STREAM)]
    assert entry_id == stored_id
    assert fields == {
        "userId": "9",
        "imageUrl": "https://img.example.com/u.jpg",
        "correlationId": "c-9",
        "timestamp": "2026-05-04T10:15:30.123456Z",
    }
    assert decode_profile_picture(fields) == picture


async def test_a_failed_publish_raises(autojump_clock: trio.abc.Clock) -> None:
    outbound = FakeOutbound()
    outbound.fail(RedisUnavailable("redis: down"), RedisUnavailable("redis: down"))
    publisher = Publisher(outbound, KEYS, maxlen=10)
    with pytest.raises(RedisUnavailable):
        await publisher.publish_post_media(POST_IMAGE_STREAM, [event(1)])
    with pytest.raises(RedisUnavailable):
        await publisher.publish_profile_picture(
            ProfilePictureEvent(user_id=9, image_url="https://x.example/u.jpg", correlation_id="c")
        )
    assert outbound.streams == {}


async def test_only_post_media_streams_take_post_media(autojump_clock: trio.abc.Clock) -> None:
    outbound = FakeOutbound()
    publisher = Publisher(outbound, KEYS, maxlen=10)
    with pytest.raises(ValueError, match="not a post media stream"):
        await publisher.publish_post_media(PROFILE_PICTURE_STREAM, [event(1)])
    assert outbound.round_trips == 0
