"""The outbox relay over in-memory fakes, on trio's clock: committed rows go out in order and
once, whatever fails when; a kick publishes at once; the last pass runs on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from actors.outbox_relay import POLL_INTERVAL, RETRY_CAP, OutboxRelay

from .fakes import FakeAnnouncer, FakeOutbox, until


def fields(n: int) -> dict[str, str]:
    return {"postId": "7", "mediaId": str(n), "correlationId": f"c-{n}"}


@pytest.fixture
async def relay() -> AsyncIterator[OutboxRelay]:
    actor = OutboxRelay(FakeOutbox(), FakeAnnouncer(), trio.Event(), batch_size=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(actor.run)
        yield actor
        actor.stopping.set()


def outbox(relay: OutboxRelay) -> FakeOutbox:
    assert isinstance(relay.store, FakeOutbox)
    return relay.store


def announcer(relay: OutboxRelay) -> FakeAnnouncer:
    assert isinstance(relay.announcer, FakeAnnouncer)
    return relay.announcer


def published(relay: OutboxRelay, stream: str = "post-image-processing") -> list[str]:
    return [f["mediaId"] for _, f in announcer(relay).streams.get(stream, [])]


async def test_committed_rows_are_published_in_order_and_deleted(
    autojump_clock: trio.abc.Clock, relay: OutboxRelay
) -> None:
    for n in range(1, 8):  # more than two batches
        outbox(relay).commit("post-image-processing", fields(n))
    relay.kick()
    await until(lambda: not outbox(relay).rows)
    assert published(relay) == [str(n) for n in range(1, 8)]
    assert relay.stats.published == 7 and relay.stats.repeated == 0
    assert not announcer(relay).marks  # deleted rows need no mark


async def test_a_kick_publishes_at_once_and_other_processes_rows_within_the_interval(
    autojump_clock: trio.abc.Clock, relay: OutboxRelay
) -> None:
    await trio.sleep(0.5)  # the relay waits for a kick or its interval
    outbox(relay).commit("post-image-processing", fields(1))
    relay.kick()
    start = trio.current_time()
    await until(lambda: published(relay) == ["1"])
    assert trio.current_time() - start < 0.05
    # A row committed by another process (no kick here) goes out by the next interval.
    outbox(relay).commit("post-image-processing", fields(2))
    start = trio.current_time()
    await until(lambda: published(relay) == ["1", "2"])
    assert trio.current_time() - start <= POLL_INTERVAL + 0.05


async def test_redis_down_keeps_the_rows_and_retries_with_backoff(
    autojump_clock: trio.abc.Clock, relay: OutboxRelay
) -> None:
    announcer(relay).down = True
    for n in (1, 2):
        outbox(relay).commit("post-image-processing", fields(n))
    relay.kick()
    await trio.sleep(30)
    assert len(outbox(relay).rows) == 2 and published(relay) == []
    calls = announcer(relay).calls
    assert 30 / RETRY_CAP <= calls <= 30  # backed off, not hammering
    assert relay.stats.failures == calls
    announcer(relay).down = False
    await until(lambda: not outbox(relay).rows, timeout=RETRY_CAP + 1)
    assert published(relay) == ["1", "2"]


async def test_a_lost_reply_is_retried_and_publishes_nothing_twice(
    autojump_clock: trio.abc.Clock, relay: OutboxRelay
) -> None:
    announcer(relay).lose_replies = 2  # the entries get there; the relay hears an error
    for n in (1, 2, 3):
        outbox(relay).commit("post-image-processing", fields(n))
    relay.kick()
    await until(lambda: not outbox(relay).rows)
    assert published(relay) == ["1", "2", "3"]
    assert relay.stats.repeated == 3 and relay.stats.failures == 2


async def test_a_superseded_claim_is_deleted_without_publishing(
    autojump_clock: trio.abc.Clock, relay: OutboxRelay
) -> None:
    outbox(relay).commit("post-aggregation-trigger", None)
    outbox(relay).commit("post-image-processing", fields(1))
    relay.kick()
    await until(lambda: not outbox(relay).rows)
    assert announcer(relay).streams.get("post-aggregation-trigger") is None
    assert relay.stats.skipped == 1 and published(relay) == ["1"]


async def test_postgres_down_then_back(autojump_clock: trio.abc.Clock, relay: OutboxRelay) -> None:
    outbox(relay).commit("post-image-processing", fields(1))
    outbox(relay).down = True
    relay.kick()
    await trio.sleep(10)
    assert relay.stats.failures >= 2 and published(relay) == []
    outbox(relay).down = False
    await until(lambda: published(relay) == ["1"], timeout=RETRY_CAP + 1)


async def test_what_is_committed_goes_out_on_the_way_out(autojump_clock: trio.abc.Clock) -> None:
    relay = OutboxRelay(FakeOutbox(), FakeAnnouncer(), trio.Event(), interval=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        await trio.sleep(1)
        outbox(relay).commit("profile-picture-processing", {"userId": "5"})  # no kick
        relay.stopping.set()
    assert [f for _, f in announcer(relay).streams["profile-picture-processing"]] == [
        {"userId": "5"}
    ]
    assert not outbox(relay).rows
