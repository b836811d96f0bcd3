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

from kaleido.app import Running
from kaleido.logs import configure_logging
from kaleido.messages import INSIGHTS_STREAM, POST_IMAGE_STREAM

from .streams_helpers import dlq_len, insight, xadd
from .test_service import client
from .test_service import running as running  # the fixture
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
    backends = running.service.backends
    post = {"postId": 300, "userId": 3,
            "media": [{"mediaId": 301, "mediaUrl": "https://cdn.example/301.jpg"}]}  # fmt: skip
    async with client(running) as http:
        r = await http.post("/v1/posts", json=post, headers={"X-Correlation-ID": "abc-123"})
    assert r.status_code in (200, 201, 202), r.text
    assert r.headers["x-correlation-id"] == "abc-123"

    # The request's own log lines.
    published = [e for e in lines(log_buffer) if e["event"] == "publish.post_media"]
    assert published and all(e.get("correlation_id") == "abc-123" for e in published)

    # Its outbound entry.
    entries = await backends.redis.execute(
        "XRANGE", backends.keys.stream(POST_IMAGE_STREAM), "-", "+"
    )
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
    backends = running.service.backends
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
