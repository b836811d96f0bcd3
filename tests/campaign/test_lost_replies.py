"""What the campaign found, each as one deterministic case: the fault proxy drops the reply to
one chosen call after the call ran (the ambiguous case)."""

from __future__ import annotations

import attrs
import trio

from kaleido import open_kaleido
from kaleido.devstack import DevStack, RedisServer
from kaleido.gateways import Backends
from kaleido.lock import _ACQUIRE, RedisLock
from kaleido.messages import (
    INSIGHTS_STREAM,
    POST_IMAGE_STREAM,
    InsightResult,
    Tagging,
    encode_insight,
)
from kaleido.outbox.publish import PUBLISH_ONCE, RedisAnnouncer
from kaleido.outbox.store import Announcement
from kaleido.settings import Settings
from kaleido.streams import dlq_list
from kaleido.streams.inbound import _DEAD_LETTER_AND_ACK

from ..waiting import wait_until
from .proxied import call_of, drop_reply, proxied_settings, through_proxy
from .proxy import FaultProxy

MEDIA, POST = 42, 7  # neither has a row: results are recorded all the same


def tagging(*tags: str) -> dict[str, str]:
    return encode_insight(InsightResult(MEDIA, POST, Tagging(tags), "c-1"))


async def processed(backends: Backends, entry_id: str) -> bool:
    return bool(
        await backends.postgres.fetchval(
            "SELECT count(*) FROM processed_messages WHERE entry_id = $1", entry_id
        )
    )


async def stored_tags(backends: Backends) -> list[str]:
    return list(
        await backends.postgres.fetchval(
            "SELECT tags FROM media_ai_insights WHERE media_id = $1", MEDIA
        )
    )


async def test_a_result_read_again_after_its_reply_was_lost_does_not_undo_a_newer_one(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    assert isinstance(stack.redis, RedisServer)
    proxy = FaultProxy(stack.redis.port)
    await nursery.start(proxy.run)
    through_proxy = attrs.evolve(
        settings, redis_url=stack.redis.url.replace(f":{stack.redis.port}/", f":{proxy.port}/")
    )
    stream = backends.keys.stream(INSIGHTS_STREAM)
    async with open_kaleido(through_proxy):
        # The consumer's blocking read of new entries: its reply (the first result) is dropped
        # after Redis delivered it, and redis-py sends the read again on a new connection.
        proxy.faults.drop_reply_to = stream.encode() + b"\r\n$1\r\n>\r\n"
        older = await backends.redis.execute("XADD", stream, "*", *flat(tagging("older")))
        await wait_until(lambda: _true(proxy.dropped_replies == 1), timeout=10)
        newer = await backends.redis.execute("XADD", stream, "*", *flat(tagging("newer")))
        await wait_until(lambda: processed(backends, newer.decode()), timeout=10)
        assert await stored_tags(backends) == ["newer"]
    async with open_kaleido(settings):  # a restart: the consumer re-reads its pending entries
        await wait_until(lambda: processed(backends, older.decode()), timeout=10)
        assert await stored_tags(backends) == ["newer"]  # stream order: the newer result wins


async def test_postgresql_errors_do_not_dead_letter_a_valid_entry(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    proxy = FaultProxy(stack.postgres.port)
    await nursery.start(proxy.run)
    through_proxy = attrs.evolve(
        settings,
        database_url=stack.postgres.url.replace(f":{stack.postgres.port}/", f":{proxy.port}/"),
    )
    stream = backends.keys.stream(INSIGHTS_STREAM)
    async with open_kaleido(through_proxy):
        # The reply to each statement on processed_messages (the one that applies the entry
        # and records it, then the look-ups of a redelivery) is lost after it ran, until the
        # entry has been delivered MAX_DELIVERIES + 1 times.
        proxy.faults.drop_reply_to = b"processed_messages"
        entry = (await backends.redis.execute("XADD", stream, "*", *flat(tagging("one")))).decode()

        async def settled() -> bool:
            """Acknowledged, after being applied or dead-lettered."""
            dead = await backends.redis.execute("XLEN", backends.keys.dlq(INSIGHTS_STREAM))
            return await pending_is_empty(backends, stream) and (
                dead > 0 or await processed(backends, entry)
            )

        for _ in range(settings.max_deliveries + 1):
            drops = proxy.dropped_replies

            async def dropped_or_settled(drops: int = drops) -> bool:
                return proxy.dropped_replies > drops or await settled()

            await wait_until(dropped_or_settled, timeout=30)
            proxy.faults.drop_reply_to = b"processed_messages"
        proxy.faults.drop_reply_to = b""
        await wait_until(settled, timeout=30)
        letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
        assert not letters, [(x.error_type, x.error) for x in letters]
        assert await processed(backends, entry)


async def test_a_lock_acquired_again_after_a_lost_reply_is_held_by_the_same_owner(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    """SET NX ran, its reply was lost, redis-py sent it again: the lock is ours, not busy
    until its TTL runs out."""
    async with through_proxy(stack, settings, nursery) as (proxy, proxied):
        lock = RedisLock(proxied.redis, proxied.keys.lock, ttl=30)
        drop_reply(proxy, call_of(_ACQUIRE, settings))
        assert await lock.acquire()
        assert proxy.dropped_replies == 1
        assert await backends.redis.execute("GET", backends.keys.lock) == lock.token.encode()
        assert await backends.redis.execute("PTTL", backends.keys.lock) > 0
        assert not await RedisLock(backends.redis, backends.keys.lock).acquire()  # still owned
        async with lock.hold():  # acquiring again renews: the same owner holds it
            assert await backends.redis.execute("GET", backends.keys.lock) == lock.token.encode()
        assert not await backends.redis.execute("EXISTS", backends.keys.lock)


async def test_a_dead_letter_whose_reply_was_lost_is_copied_once(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    """The copy to the DLQ and the XACK ran, their reply was lost, redis-py sent them again:
    one dead letter, nothing pending."""
    assert isinstance(stack.redis, RedisServer)
    proxy = FaultProxy(stack.redis.port)
    await nursery.start(proxy.run)
    stream = backends.keys.stream(INSIGHTS_STREAM)
    async with open_kaleido(proxied_settings(stack, settings, proxy)):
        drop_reply(proxy, call_of(_DEAD_LETTER_AND_ACK, settings))
        poison = {"mediaId": "x", "postId": "1", "service": "tagging", "tags": "[]"}
        entry = (await backends.redis.execute("XADD", stream, "*", *flat(poison))).decode()
        await wait_until(lambda: _true(proxy.dropped_replies == 1), timeout=10)
        good = await backends.redis.execute("XADD", stream, "*", *flat(tagging("after")))
        await wait_until(lambda: processed(backends, good.decode()), timeout=10)
        await wait_until(lambda: pending_is_empty(backends, stream), timeout=10)
    letters = await dlq_list(backends.redis, backends.keys, INSIGHTS_STREAM)
    assert [letter.original_id for letter in letters] == [entry]


async def test_an_announcement_whose_reply_was_lost_is_published_once(
    stack: DevStack, settings: Settings, backends: Backends, nursery: trio.Nursery
) -> None:
    """PUBLISH_ONCE added the entry and its mark, the reply was lost, redis-py sent it again:
    the mark says it was published, and nothing is added twice."""
    row = Announcement(1, POST_IMAGE_STREAM, (("mediaId", "10"), ("postId", "1")))
    async with through_proxy(stack, settings, nursery) as (proxy, proxied):
        announcer = RedisAnnouncer(proxied.redis, proxied.keys, maxlen=1000)
        drop_reply(proxy, call_of(PUBLISH_ONCE, settings))
        assert await announcer.publish([row]) == 0  # the retry found it published
        assert proxy.dropped_replies == 1
        assert await announcer.publish([row]) == 0  # and so does a relay that retries the row
    stream = backends.keys.stream(POST_IMAGE_STREAM)
    assert await backends.redis.execute("XLEN", stream) == 1


async def pending_is_empty(backends: Backends, stream: str) -> bool:
    summary = await backends.redis.execute("XPENDING", stream, "backend-group")
    return int(summary["pending"] if isinstance(summary, dict) else summary[0]) == 0


def flat(fields: dict[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]


async def _true(value: bool) -> bool:
    return value
