"""A request's correlation id, end to end: the request's log lines, its outbound stream entry,
and the log lines of the inbound result that echoes it (as the ML service does)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from kaleido.app import Running, service_of
from kaleido.logs import configure_logging
from kaleido.messages import INSIGHTS_STREAM, POST_IMAGE_STREAM, keeps_type, peer_fields

from .service_helpers import client
from .streams_helpers import dlq_len, insight, xadd
from .waiting import wait_until

pytestmark = pytest.mark.redis_kinds("single", "cluster")

CONSUMER = "kaleido.streams.consumer"


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """The project's own logging set-up (JSON lines), writing to a buffer."""
    saved = structlog.get_config()
    saved["processors"] = list(saved["processors"])
    buffer = io.StringIO()
    configure_logging("json", level=logging.DEBUG, stream=buffer)
    try:
        yield buffer
    finally:
        structlog.configure(**saved)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_a_correlation_id_follows_a_post_through_the_ml_pipeline(
    log_buffer: io.StringIO, running: Running
) -> None:
    backends = service_of(running).backends
    post = {"postId": 300, "userId": 3,
            "media": [{"mediaId": 301, "mediaUrl": "https://cdn.example/301.jpg"}]}  # fmt: skip
    async with client(running) as http:
        r = await http.post("/v1/posts", json=post, headers={"X-Correlation-ID": "abc-123"})
    assert r.status_code in (200, 201, 202), r.text
    assert r.headers["x-correlation-id"] == "abc-123"

    # The request's own log lines.
    stored = [e for e in lines(log_buffer) if e["event"] == "post.stored"]
    assert stored and all(e.get("correlation_id") == "abc-123" for e in stored)

    # Its outbound entry, once the relay has published it.
    image_key = backends.keys.stream(POST_IMAGE_STREAM)

    async def published() -> bool:
        return int(await backends.redis.execute("XLEN", image_key)) >= 1

    await wait_until(published)
    entries = await backends.redis.execute("XRANGE", image_key, "-", "+")
    (_, fields), *_ = entries
    assert fields[b"correlationId"] == b"abc-123" and fields[b"mediaId"] == b"301"

    # The ML service answers, echoing the correlation id.
    result_id = await xadd(backends, INSIGHTS_STREAM, {
        "mediaId": "301", "postId": "300", "service": "tagging", "tags": '["dog"]',
        "correlationId": "abc-123",
    })  # fmt: skip

    async def applied() -> bool:
        return await insight(backends, 301) is not None

    await wait_until(applied)
    row = await insight(backends, 301)
    assert row is not None and row["correlation_id"] == "abc-123"
    # The consumer's lines about the entry: its own, or a batch line naming it among others.
    for_entry = [
        named
        for e in lines(log_buffer) if e.get("component") == CONSUMER
        for named in [e, *e.get("applied", [])] if named.get("entry_id") == result_id
    ]  # fmt: skip
    assert for_entry, "the consumer logged nothing about the entry"
    assert all(e.get("correlation_id") == "abc-123" for e in for_entry), for_entry


async def test_a_dead_lettered_result_is_logged_with_its_correlation_id(
    log_buffer: io.StringIO, running: Running
) -> None:
    backends = service_of(running).backends
    bad_id = await xadd(backends, INSIGHTS_STREAM, {
        "mediaId": "not-a-number", "service": "tagging", "correlationId": "abc-124",
    })  # fmt: skip

    async def dead_lettered() -> bool:
        return await dlq_len(backends, INSIGHTS_STREAM) == 1

    await wait_until(dead_lettered)
    (line,) = [
        e for e in lines(log_buffer)
        if e["event"] == "consumer.dead_letter" and e.get("entry_id") == bad_id
    ]  # fmt: skip
    assert line["correlation_id"] == "abc-124"


# Ids a caller may send that the ML service's JSON decoding turns into something else.
CHANGED_BY_THE_PEER = ["1234567890", "0", "-1", "1e5", "1.5", "true", "false", "null", "NaN",
                       "Infinity", "-Infinity"]  # fmt: skip


@pytest.mark.parametrize("caller_id", CHANGED_BY_THE_PEER)
async def test_a_caller_id_the_ml_service_would_decode_is_replaced_and_logged(
    log_buffer: io.StringIO, running: Running, caller_id: str
) -> None:
    backends = service_of(running).backends
    post = {"postId": 400, "userId": 4,
            "media": [{"mediaId": 401, "mediaUrl": "https://cdn.example/401.jpg"},
                      {"mediaId": 402, "mediaUrl": "https://cdn.example/402.jpg"}]}  # fmt: skip
    async with client(running) as http:
        r = await http.post("/v1/posts", json=post, headers={"X-Correlation-ID": caller_id})
    assert r.status_code == 201, r.text
    fresh = r.headers["x-correlation-id"]
    assert fresh != caller_id and keeps_type(fresh)
    image_key = backends.keys.stream(POST_IMAGE_STREAM)

    async def published() -> bool:
        return int(await backends.redis.execute("XLEN", image_key)) == 2

    await wait_until(published)
    for _, fields in await backends.redis.execute("XRANGE", image_key, "-", "+"):
        decoded = peer_fields({k.decode(): v.decode() for k, v in fields.items()})
        assert decoded["correlationId"] == fresh  # still text after the peer's decoding
    (replaced,) = [e for e in lines(log_buffer) if e["event"] == "http.correlation_id_replaced"]
    assert replaced["caller_correlation_id"] == caller_id
    assert replaced["correlation_id"] == fresh
